"""A CI gate: limits on latency, size, memory and accuracy per benchmark row, read from JSON.

Budget file schema (a JSON object; every key optional, at least one limit required)::

    {
      "max_p50_ms":      {"tflite_int8": 20, "onnx_fp32": 40, "*": 100},
      "max_p99_ms":      {"*": 150},
      "min_fps":         {"tflite_int8": 30},
      "max_size_mb":     {"tflite_int8": 1.5, "*": 20},
      "max_peak_rss_mb": {"*": 2000},
      "min_miou":        {"*": 0.5},
      "min_pixel_acc":   {"*": 0.8},
      "max_miou_drop":   {"tflite_int8": 1.0, "*": 2.0},
      "min_agreement":   {"*": 0.95},
      "max_slowdown":    {"*": 0.05},
      "_comment":        "keys starting with _ are ignored"
    }

`max_slowdown` (a fraction: 0.05 = 5%) is a relative limit for `bench CANDIDATE... --baseline
BASELINE...` (the paired gate, `gate.py`); there `max_miou_drop` is the candidate's drop against its
baseline. The absolute limits apply to a plain `bench`.

Each limit maps row names (`BenchRow.name`) or "*" (every other row) to a number >= 0; a bare
number is short for {"*": number}. A row's own entry overrides "*". Units are those of the
report: ms, MiB, fractions 0..1 for mIoU / pixel accuracy / agreement, percentage points for
mIoU drop (float reference mIoU minus the row's). A limit equal to the measured value passes.

Nothing passes silently:
- a row named explicitly that is absent from the report, or skipped, is a violation;
- a failed row covered by any limit (named or through "*") is a violation;
- a limit that applies to a row whose value was not measured (None) or is NaN is a violation.
Skipped rows covered only through "*" are not checked (the report lists them with their reason).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deeplab_edge.errors import UserError, did_you_mean

from .results import BenchReport, BenchRow

__all__ = ["LIMITS", "Budget", "Limit", "Violation", "check_budget", "format_violations", "load_budget"]

DEFAULT_KEY = "*"
GATE_LIMITS = ("max_slowdown",)  # relative limits: only `bench --baseline` (gate.py) reads them


@dataclass(frozen=True)
class Limit:
    """One kind of limit: its direction, what it measures and in which unit."""

    kind: str  # "max" or "min"
    label: str
    unit: str
    value: Callable[[BenchRow], float | None]


LIMITS: dict[str, Limit] = {
    "max_p50_ms": Limit("max", "p50 latency", "ms", lambda r: r.p50_ms),
    "max_p99_ms": Limit("max", "p99 latency", "ms", lambda r: r.latency.p99_ms if r.latency else None),
    "min_fps": Limit("min", "FPS", "", lambda r: r.fps),
    "max_size_mb": Limit("max", "size", "MB", lambda r: r.size_mb),
    "max_peak_rss_mb": Limit("max", "peak RSS", "MB", lambda r: r.peak_rss_mb),
    "min_miou": Limit("min", "mIoU", "", lambda r: r.miou),
    "min_pixel_acc": Limit("min", "pixel accuracy", "", lambda r: r.pixel_acc),
    "max_miou_drop": Limit("max", "mIoU drop", "points", lambda r: r.miou_drop),
    "min_agreement": Limit("min", "argmax agreement", "", lambda r: r.agreement),
}


def _fmt(v: float) -> str:
    return format(v, ".4g")


def _with_unit(v: float, unit: str) -> str:
    return f"{_fmt(v)} {unit}" if unit else _fmt(v)


@dataclass(frozen=True)
class Budget:
    """Limits per row: `limits[limit_name][row_name or "*"] = number`. `source` names the file."""

    limits: dict[str, dict[str, float]]
    source: str = "budget"

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", _validate(self.limits, self.source))

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str = "budget") -> Budget:
        return cls(limits=d, source=source)

    def to_dict(self) -> dict:
        return {name: dict(spec) for name, spec in self.limits.items()}

    @property
    def named_rows(self) -> list[str]:
        """Rows named explicitly by any limit (so required to be present and measured)."""
        return sorted({row for spec in self.limits.values() for row in spec if row != DEFAULT_KEY})

    def applicable(self, row_name: str) -> dict[str, float]:
        """limit name -> value that applies to the row named `row_name` (own entry, else "*")."""
        out = {}
        for name, spec in self.limits.items():
            if row_name in spec:
                out[name] = spec[row_name]
            elif DEFAULT_KEY in spec:
                out[name] = spec[DEFAULT_KEY]
        return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate(d: Mapping, source: str) -> dict[str, dict[str, float]]:
    if not isinstance(d, Mapping):
        raise UserError(f"Budget {source} must be a JSON object of limits; received {type(d).__name__}. "
                        f"Valid limits: {', '.join(LIMITS)}.")
    out: dict[str, dict[str, float]] = {}
    for name, spec in d.items():
        if isinstance(name, str) and name.startswith("_"):
            continue  # comment
        if name not in LIMITS and name not in GATE_LIMITS:
            raise UserError(f"Budget {source}: unknown limit {name!r}.{did_you_mean(str(name), [*LIMITS, *GATE_LIMITS])} "
                            f"Valid limits: {', '.join([*LIMITS, *GATE_LIMITS])}.")
        if _is_number(spec):
            spec = {DEFAULT_KEY: spec}
        if not isinstance(spec, Mapping) or not spec:
            raise UserError(f"Budget {source}: {name} must be a number or an object of row name -> number "
                            f'like {{"tflite_int8": 20, "*": 100}}; received {spec!r}.')
        checked = {}
        for row, value in spec.items():
            if not isinstance(row, str) or not row:
                raise UserError(f"Budget {source}: {name} has a row key {row!r}; use a row name or \"*\".")
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise UserError(f"Budget {source}: {name}[{row!r}] must be a finite number >= 0; "
                                f"received {value!r} ({type(value).__name__}).")
            checked[row] = float(value)
        out[name] = checked
    if not out:
        raise UserError(f"Budget {source} sets no limits, so it would pass anything. "
                        f"Add at least one of: {', '.join(LIMITS)}.")
    return out


def load_budget(path: str | os.PathLike) -> Budget:
    """Read and validate a budget JSON file (schema in the module docstring).

    Raises:
        UserError: the file is missing, not JSON, or has an unknown limit or a malformed value;
            the message names the file and the offending key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"Budget file {path} does not exist; pass the path of a JSON budget file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Budget file {path} cannot be read: {e}.") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"Budget file {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                        'expected an object like {"max_p50_ms": {"*": 100}}.') from None
    return Budget.from_dict(d, source=str(path))


@dataclass(frozen=True)
class Violation:
    """One broken limit. `measured` is None when the row is missing, skipped, failed or unmeasured."""

    row: str
    limit: str
    limit_value: float | None
    measured: float | None
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_budget(report: BenchReport, budget: Budget) -> list[Violation]:
    """Every limit of `budget` that `report` breaks, in report row order; [] means the gate passes."""
    if any(name in budget.limits for name in GATE_LIMITS):
        raise UserError(f"Budget {budget.source} sets {', '.join(n for n in GATE_LIMITS if n in budget.limits)}, a "
                        "limit relative to a baseline: run `deeplab-edge bench CANDIDATE... --baseline BASELINE... "
                        f"--budget {budget.source}`.")
    rows = {r.name: r for r in report.rows}
    named = set(budget.named_rows)
    out: list[Violation] = []
    for name in sorted(named - set(rows)):
        limits = [k for k, spec in budget.limits.items() if name in spec]
        out.append(Violation(name, ", ".join(limits), None, None,
                             f"{name}: required row missing from the report (named by {', '.join(limits)})."
                             f"{did_you_mean(name, rows)} Rows: {', '.join(rows) or 'none'}."))
    for row in report.rows:
        applicable = budget.applicable(row.name)
        if not applicable:
            continue
        if row.status == "skipped":
            if row.name in named:
                out.append(Violation(row.name, ", ".join(applicable), None, None,
                                     f"{row.name}: required row skipped ({row.reason})."))
            continue
        if row.status == "failed":
            out.append(Violation(row.name, ", ".join(applicable), None, None,
                                 f"{row.name}: row failed ({row.reason})."))
            continue
        for limit_name, bound in applicable.items():
            lim = LIMITS[limit_name]
            measured = lim.value(row)
            if measured is None or math.isnan(measured):
                what = "not measured" if measured is None else "NaN"
                out.append(Violation(row.name, limit_name, bound, measured,
                                     f"{row.name}: {lim.label} {what}, but {limit_name} {_fmt(bound)} applies."))
            elif (measured > bound) if lim.kind == "max" else (measured < bound):
                op = ">" if lim.kind == "max" else "<"
                out.append(Violation(row.name, limit_name, bound, measured,
                                     f"{row.name}: {lim.label} {_with_unit(measured, lim.unit)} {op} "
                                     f"{limit_name} {_fmt(bound)}"))
    return out


def format_violations(violations: Sequence[Violation]) -> str:
    """A plain-text verdict: "budget: pass" or "budget: N violation(s)" and one line per violation."""
    if not violations:
        return "budget: pass\n"
    lines = [f"budget: {len(violations)} violation{'s' if len(violations) != 1 else ''}"]
    lines += [f"  {v.message}" for v in violations]
    return "\n".join(lines) + "\n"


def gate_limits(budget: Budget, max_slowdown: float, max_miou_drop: float | None):
    """The paired gate's limits per row: the budget's relative limits (max_slowdown, max_miou_drop) over the
    given ones. Returns (slowdown(name), miou_drop(name), the budget's absolute limits the gate ignores)."""
    ignored = [k for k in budget.limits if k in LIMITS and k != "max_miou_drop"]

    def slowdown(name: str) -> float:
        return budget.applicable(name).get(GATE_LIMITS[0], max_slowdown)

    def miou_drop(name: str) -> float | None:
        return budget.applicable(name).get("max_miou_drop", max_miou_drop)

    return slowdown, miou_drop, ignored
