"""Benchmark results: one `BenchRow` per model file x backend x device, gathered in a `BenchReport`.

Units, stated once: times in milliseconds, sizes and memory in MiB ("MB" in names), `miou`,
`pixel_acc` and `agreement` as fractions 0..1, `miou_drop` in percentage points
(reference mIoU minus this row's, x 100; positive = this row is worse).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deeplab_edge.errors import UserError, unknown_name_error
from deeplab_edge.fileio import write_text_atomic
from deeplab_edge.runtime.stages import LatencyStats

__all__ = [
    "BACKENDS",
    "DEVICES",
    "REPORT_FORMAT",
    "STATUSES",
    "BenchReport",
    "BenchRow",
    "add_miou_drop",
    "load_report",
]

REPORT_FORMAT = "deeplab-edge-bench/1"
BACKENDS = ("keras", "litert", "onnxruntime")
DEVICES = ("cpu", "gpu")
STATUSES = ("ok", "skipped", "failed")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class BenchRow:
    """One benchmarked model: where it came from, how it ran, how fast and how accurate.

    Attributes:
        name: stable row id, e.g. "keras_fp32", "tflite_int8", "onnx_fp32".
        format: file format, e.g. "keras", "tflite", "onnx".
        backend: "keras", "litert" or "onnxruntime".
        device: "cpu" or "gpu".
        threads: intra-op threads, None if the backend chose.
        status: "ok", "skipped" (could not run here, e.g. no GPU) or "failed" (an error).
        reason: why it was skipped or failed; "" when ok.
        file: path of the model file, None for an in-memory model.
        size_mb: file size in MiB.
        latency: inference-only latency stats (no pre/post-processing), None if not measured.
        pre_ms, post_ms: p50 of pre- and post-processing per image in ms, None if not measured.
        peak_rss_mb: peak resident memory (MiB) of a process that only loaded the model, warmed it up and
            timed it (no evaluation set in it): the runtime's footprint, the same for any eval-set size.
        base_rss_mb: that process's resident memory before the model was loaded (Python, numpy and the
            runtime library imported): peak_rss_mb - base_rss_mb is what the model itself costs.
        load_ms, first_ms: cold start, as LiteRT's benchmark_model reports it: reading the file and
            building the interpreter/session (load), then the first inference (first).
        per_class_iou: IoU of each class on the evaluation images (0..1; None: absent from labels and
            predictions), in the order of the report's settings["class_names"].
        miou, pixel_acc: on the evaluation images, fractions 0..1.
        agreement: fraction 0..1 of pixels whose argmax equals the float reference model's.
        miou_drop: reference mIoU minus this row's, in percentage points (0.8 = 0.8 points worse).
        note: why an ok row has no accuracy figures (latency only), or what was inferred about the file.
        provider: what actually ran the row, read back from the runtime after loading ("XNNPACK (CPU)",
            "CUDAExecutionProvider, CPUExecutionProvider", "TensorFlow CPU"); "" when it did not run.
        gpu: for a LiteRT GPU row, the adapter LiteRT selected, whether it is emulated (a software Vulkan
            device on the CPU: its latency is not a GPU's), the arithmetic precision, full acceleration.
    """

    name: str
    format: str
    backend: str
    device: str = "cpu"
    threads: int | None = None
    status: str = "ok"
    reason: str = ""
    file: str | None = None
    size_mb: float | None = None
    latency: LatencyStats | None = None
    pre_ms: float | None = None
    post_ms: float | None = None
    peak_rss_mb: float | None = None
    miou: float | None = None
    pixel_acc: float | None = None
    agreement: float | None = None
    miou_drop: float | None = None
    note: str = ""
    provider: str = ""
    base_rss_mb: float | None = None  # new keys go last: the JSON key order is stable
    load_ms: float | None = None
    first_ms: float | None = None
    per_class_iou: list[float | None] | None = None  # IoU of each class (0..1), None where absent from both
    gpu: dict | None = None  # GPU rows: adapter, emulated, precision, fully_accelerated (runtime.gpu.GpuInfo)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise UserError(f"A benchmark row needs a non-empty name; received {self.name!r}.")
        for attr, valid in (("status", STATUSES), ("backend", BACKENDS), ("device", DEVICES)):
            if getattr(self, attr) not in valid:
                raise unknown_name_error(attr, str(getattr(self, attr)), valid)
        if self.status != "ok" and not self.reason:
            raise UserError(f"Row {self.name!r} is {self.status} but gives no reason; pass reason='...'.")
        if isinstance(self.latency, Mapping):
            object.__setattr__(self, "latency", LatencyStats.from_dict(self.latency))
        if self.file is not None:
            object.__setattr__(self, "file", str(self.file))

    @classmethod
    def skipped(cls, name: str, format: str, backend: str, reason: str, **kw) -> BenchRow:
        """A row that could not run here (e.g. "no GPU"), kept in the report with its reason."""
        return cls(name=name, format=format, backend=backend, status="skipped", reason=reason, **kw)

    @classmethod
    def failed(cls, name: str, format: str, backend: str, reason: str, **kw) -> BenchRow:
        """A row whose export or run raised; `reason` is the one-line error."""
        return cls(name=name, format=format, backend=backend, status="failed", reason=reason, **kw)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def emulated(self) -> bool:
        """A GPU row on a software device: correct results, a CPU's latency."""
        return bool(self.gpu and self.gpu.get("emulated"))

    @property
    def p50_ms(self) -> float | None:
        return self.latency.p50_ms if self.latency else None

    @property
    def fps(self) -> float | None:
        return self.latency.fps if self.latency else None

    @property
    def pre_post_ms(self) -> float | None:
        """pre_ms + post_ms (either alone if only one was measured), or None."""
        parts = [v for v in (self.pre_ms, self.post_ms) if v is not None]
        return sum(parts) if parts else None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["latency"] = self.latency.to_dict() if self.latency else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> BenchRow:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("name", "format", "backend") if k not in d]
        if missing:
            raise UserError(f"A benchmark row lacks the keys {missing}; received keys {sorted(d)}.")
        kw = {k: v for k, v in d.items() if k in names}  # keys from newer versions are ignored
        if kw.get("latency") is not None:
            kw["latency"] = LatencyStats.from_dict(kw["latency"])
        return cls(**kw)


def add_miou_drop(rows: Iterable[BenchRow], reference: str) -> list[BenchRow]:
    """Fill `miou_drop` of every row with an mIoU from the mIoU of the row named `reference`.

    The reference row gets 0.0. Rows without an mIoU keep None. Raises UserError if the reference
    row is absent or has no mIoU.
    """
    rows = list(rows)
    by_name = {r.name: r for r in rows}
    if reference not in by_name:
        raise unknown_name_error("reference row", reference, by_name)
    ref = by_name[reference].miou
    if ref is None:
        raise UserError(f"Reference row {reference!r} has no mIoU ({by_name[reference].status}); "
                        "evaluate it or choose another reference row.")
    return [dataclasses.replace(r, miou_drop=(ref - r.miou) * 100.0) if r.miou is not None else r for r in rows]


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """All rows of one benchmark run, the machine it ran on and the settings it used.

    Attributes:
        rows: one `BenchRow` per model x backend x device, in display order; skipped ones included.
        machine: `sysinfo.machine_info()`.
        settings: e.g. {"warmup": 5, "min_runs": 20, "min_time_s": 2.0, "threads": 2,
            "eval_images": 50, "input_size": [128, 128]}.
        created: UTC time, ISO 8601.
    """

    rows: tuple[BenchRow, ...]
    machine: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    created: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        rows = tuple(BenchRow.from_dict(r) if isinstance(r, Mapping) else r for r in self.rows)
        names = [r.name for r in rows]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserError(f"Benchmark row names must be unique; received {dupes} more than once.")
        object.__setattr__(self, "rows", rows)

    def row(self, name: str) -> BenchRow:
        """The row named `name`; UserError listing the row names if absent."""
        for r in self.rows:
            if r.name == name:
                return r
        raise unknown_name_error("row", name, [r.name for r in self.rows])

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def to_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> BenchReport:
        fmt = d.get("format", REPORT_FORMAT)
        if fmt != REPORT_FORMAT:
            raise UserError(f"Unsupported benchmark report format {fmt!r}; this version reads {REPORT_FORMAT!r}.")
        if not isinstance(d.get("rows"), Sequence):
            raise UserError(f"A benchmark report needs a 'rows' list; received keys {sorted(d)}.")
        kw = {"created": d["created"]} if d.get("created") else {}
        return cls(rows=tuple(BenchRow.from_dict(r) for r in d["rows"]),
                   machine=dict(d.get("machine") or {}), settings=dict(d.get("settings") or {}), **kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n"

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON, atomically (temporary file then os.replace)."""
        return write_text_atomic(path, self.to_json())


def load_report(path: str | os.PathLike) -> BenchReport:
    """Read a report written by `BenchReport.write_json`; UserError naming the file if it is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"Benchmark report {path} does not exist; run `deeplab-edge bench` first.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Benchmark report {path} is not readable JSON: {e}.") from None
    if not isinstance(d, Mapping):
        raise UserError(f"Benchmark report {path} must hold a JSON object; received {type(d).__name__}.")
    try:
        return BenchReport.from_dict(d)
    except UserError as e:
        raise UserError(f"Benchmark report {path}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"Benchmark report {path} is malformed: {e}.") from None
