"""A `BenchReport` as a Markdown table (for READMEs and CI summaries) or an aligned terminal table.

Skipped and failed rows stay in the table and are listed again with their reasons: a result that
could not be measured is never silently dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from deeplab_edge.fileio import write_text_atomic

from .results import BenchReport, BenchRow
from .sysinfo import isa_summary, machine_summary

__all__ = ["COLUMNS", "to_markdown", "to_terminal", "write_markdown"]

# Versions shown in the header, in this order, when installed.
_HEADER_PACKAGES = ("onnxruntime", "ai-edge-litert", "tensorflow", "tf-keras", "numpy")


def _num(fmt: str, value: float | None, scale: float = 1.0) -> str | None:
    return None if value is None else format(value * scale, fmt)


def _short_provider(provider: str) -> str:
    """The first (main) provider, short: "CUDAExecutionProvider, CPUExecutionProvider" -> "CUDA"."""
    first = provider.split(",")[0].strip()
    return first.removesuffix("ExecutionProvider").replace("TensorFlow ", "TF ").replace("/physical_device:", "")


def _lat(attr: str) -> Callable[[BenchRow], str | None]:
    return lambda r: _num(".2f", getattr(r.latency, attr)) if r.latency else None


# (markdown header, terminal header, cell, right-aligned). Cells return None for "not measured".
COLUMNS: tuple[tuple[str, str, Callable[[BenchRow], str | None], bool], ...] = (
    ("name", "name", lambda r: r.name, False),
    ("format", "", lambda r: r.format, False),
    ("backend", "backend", lambda r: r.backend, False),
    ("device", "dev", lambda r: f"{r.device} (emulated)" if r.emulated else r.device, False),
    ("provider (ran on)", "provider", lambda r: _short_provider(r.provider) if r.provider else None, False),
    ("threads", "thr", lambda r: None if r.threads is None else str(r.threads), True),
    ("status", "status", lambda r: r.status, False),
    ("size MB", "MB", lambda r: _num(".2f", r.size_mb), True),
    ("p50 ms", "p50 ms", _lat("p50_ms"), True),
    ("p90 ms", "p90 ms", _lat("p90_ms"), True),
    ("p99 ms", "p99 ms", _lat("p99_ms"), True),
    ("FPS", "FPS", lambda r: _num(".1f", r.fps), True),
    ("pre+post ms", "pre+post", lambda r: _num(".2f", r.pre_post_ms), True),
    ("mIoU %", "mIoU %", lambda r: _num(".2f", r.miou, 100.0), True),
    ("ΔmIoU pts", "dmIoU", lambda r: _num("+.2f", None if r.miou_drop is None else 0.0 - r.miou_drop), True),
    ("agreement %", "agree %", lambda r: _num(".2f", r.agreement, 100.0), True),
    ("peak RSS MB", "RSS MB", lambda r: _num(".0f", r.peak_rss_mb), True),
    ("load ms", "load ms", lambda r: _num(".1f", r.load_ms), True),
    ("1st inference ms", "1st ms", lambda r: _num(".1f", r.first_ms), True),
)

LEGEND = (
    "p50/p90/p99: inference-only latency percentiles per image (batch 1), linear interpolation over "
    "all timed runs, no clipping; FPS = 1000 / p50. pre+post: p50 of pre-processing plus p50 of "
    "post-processing per image. mIoU: mean IoU over classes on the evaluation images. ΔmIoU: this "
    "row's mIoU minus the float reference's, in percentage points (negative = worse). agreement: "
    "share of pixels whose predicted class equals the float reference's. peak RSS: high-water mark "
    "(MiB) of a process that only loaded, warmed up and timed the model (the evaluation runs in another). "
    "load / 1st inference: cold start, reading the file and building the interpreter or session, then "
    "the first inference (on a GPU: shader compilation and weight upload). Sizes in MiB. GPU rows time "
    "until the output is back on the host; gpu (emulated): a software Vulkan device (SwiftShader) on the "
    "CPU, which proves the file and the GPU path but whose latency is not a GPU's."
)


def _threads(report: BenchReport) -> str:
    t = report.settings.get("threads")
    if t is None:
        found = sorted({r.threads for r in report.rows if r.threads is not None})
        t = "/".join(str(v) for v in found) if found else None
    return f"{t} thread{'s' if str(t) != '1' else ''}" if t is not None else "threads: backend default"


def _versions(machine: dict) -> str:
    versions = machine.get("versions") or {}
    return ", ".join(f"{p} {versions[p]}" for p in _HEADER_PACKAGES if versions.get(p))


def _settings(settings: dict) -> str:
    parts = []
    if "warmup" in settings:
        parts.append(f"{settings['warmup']} warm-up runs")
    runs = [f">= {settings['min_runs']} runs" if "min_runs" in settings else "",
            f">= {settings['min_time_s']:g} s" if "min_time_s" in settings else ""]
    if any(runs):
        parts.append(" and ".join(p for p in runs if p) + " per row")
    if settings.get("eval_images") is not None:
        parts.append(f"{settings['eval_images']} evaluation images")
    size = settings.get("input_size")
    if size:
        parts.append(f"input {size[0]}x{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else f"input {size}")
    shown = {"warmup", "min_runs", "min_time_s", "eval_images", "input_size", "threads"}
    parts += [f"{k} {v}" for k, v in settings.items() if k not in shown]
    return ", ".join(parts)


def _header_line(report: BenchReport) -> str:
    m = report.machine
    cpus = m.get("cpu_count")
    cpu = str(m.get("cpu_model") or "unknown CPU") + (f" ({cpus} logical CPUs)" if cpus else "")
    parts = [cpu, f"ISA {m.get('isa_summary') or isa_summary(m)}", m.get("int8_isa", ""), _threads(report)]
    if m.get("gpus"):
        parts.append("GPU " + ", ".join(m["gpus"]))
    versions = _versions(m)
    if versions:
        parts.append(versions)
    parts.append(report.created or m.get("date", ""))
    return " · ".join(p for p in parts if p)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _notes(report: BenchReport) -> tuple[list[str], list[str]]:
    """(skipped/failed lines, outlier lines)."""
    not_run = [f"{r.name} ({r.status}): {_one_line(r.reason)}" for r in report.rows if not r.ok]
    not_run += [f"{r.name}: {_one_line(r.note)}" for r in report.rows if r.ok and r.note]
    outliers = [f"{r.name}: {r.latency.outlier_note}" for r in report.rows if r.latency and r.latency.outliers]
    return not_run, outliers


def _per_class_table(report: BenchReport, esc) -> list[str]:
    """Per-class IoU (%) of every scored row, one column per class."""
    rows = [r for r in report.rows if r.per_class_iou]
    if not rows:
        return []
    n = max(len(r.per_class_iou) for r in rows)
    names = list(report.settings.get("class_names") or [])
    names = names if len(names) == n else [f"class {i}" for i in range(n)]
    lines = ["", "Per-class IoU %:", "", "| row | " + " | ".join(esc(c) for c in names) + " |",
             "|---|" + "---:|" * n]
    for r in rows:
        cells = ["–" if v is None else f"{100 * v:.1f}" for v in r.per_class_iou]
        lines.append(f"| {esc(r.name)} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: BenchReport) -> str:
    """The report as Markdown: a header line (CPU, ISA, threads, versions, date), the table, a legend,
    and every skipped or failed row with its reason."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["## deeplab-edge benchmark", "", f"**{esc(_header_line(report))}**", ""]
    settings = _settings(report.settings)
    if settings:
        lines += [f"Settings: {esc(settings)}.", ""]
    lines.append("| " + " | ".join(h for h, _, _, _ in COLUMNS) + " |")
    lines.append("|" + "|".join("---:" if right else "---" for _, _, _, right in COLUMNS) + "|")
    for r in report.rows:
        cells = [esc(_one_line(c)) if (c := cell(r)) is not None else "–" for _, _, cell, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if not report.rows:
        lines += ["", "_No rows were benchmarked._"]
    lines += ["", LEGEND]
    lines += _per_class_table(report, esc)
    not_run, outliers = _notes(report)
    if not_run:
        lines += ["", "Skipped, failed or latency only:", ""] + [f"- {esc(s)}" for s in not_run]
    if outliers:
        lines += ["", "Outlier runs (included in the statistics):", ""] + [f"- {esc(s)}" for s in outliers]
    return "\n".join(lines) + "\n"


def to_terminal(report: BenchReport) -> str:
    """The report as a fixed-width plain-text table (numbers right-aligned), with reasons below."""
    cols = [(th, cell, right) for _, th, cell, right in COLUMNS if th]
    table = [[th for th, _, _ in cols]]
    for r in report.rows:
        table.append([_one_line(c) if (c := cell(r)) is not None else "-" for _, cell, _ in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    fmt = lambda row: "  ".join(  # noqa: E731
        v.rjust(w) if right else v.ljust(w) for v, w, (_, _, right) in zip(row, widths, cols, strict=True)
    ).rstrip()
    lines = [machine_summary(report.machine, threads=report.settings.get("threads")), fmt(table[0]),
             "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in table[1:]]
    if not report.rows:
        lines.append("(no rows)")
    not_run, outliers = _notes(report)
    lines += [f"  {s}" for s in not_run]
    lines += [f"  outliers {s}" for s in outliers]
    return "\n".join(lines) + "\n"


def write_markdown(report: BenchReport, path: str | os.PathLike) -> Path:
    """Write `to_markdown(report)` to `path` atomically (temporary file then os.replace)."""
    return write_text_atomic(path, to_markdown(report))


def write_record(stem: str | os.PathLike, doc: dict, lines: list[str]) -> None:
    """A benchmark script's record: `doc` as STEM.json, `lines` as STEM.md (folders made, atomic writes),
    and the Markdown on stdout."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stem.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
