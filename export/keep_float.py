"""Selective float fallback for int8 files: `--keep-float PATTERN...` and the automatic search.

`--auto-keep-float` first tries quantisation settings (onnx_int8: weight range, per-channel, activation
type, symmetric activations, calibration method; `search_settings`), each measured on the held-out
images, because a setting often recovers what many float layers would. Only when the best setting still
misses the budget does it keep layers in float: it ranks the quantised layers by their error (`quant_report`, worst SQNR first) and
keeps them in float one at a time, re-quantising and re-verifying on the held-out images after each,
until the file's mIoU is within `--max-miou-drop` points of the Keras model's (or `--max-keep-float`
layers are float, then it fails naming what it reached).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deeplab_edge.errors import UserError, did_you_mean

from .verify import Verification

DEFAULT_MAX_KEEP_FLOAT = 20


def match_layers(patterns: Sequence[str], layers: Sequence[tuple[str, str]], where: str) -> tuple[str, ...]:
    """The names among `layers` ((name, op type) pairs) that the keep-float `patterns` select: a pattern
    equal to an op type (any case: DEPTHWISE_CONV_2D, Conv) takes every op of that type; one with * ? [
    is a glob on the name; a full name that one; any other a substring of the name (a Keras layer name
    such as aspp_proj).
    A pattern that selects nothing is an error naming what there is."""
    chosen: list[str] = []
    ops = {op.lower() for _, op in layers}
    for pattern in patterns:
        if pattern.lower() in ops:
            hits = [n for n, op in layers if op.lower() == pattern.lower()]
        elif any(n == pattern for n, _ in layers):  # a full name (from quant-report) takes that one alone
            hits = [pattern]
        elif any(c in pattern for c in "*?["):
            hits = [n for n, _ in layers if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = [n for n, _ in layers if pattern in n]
        if not hits:
            names = sorted({part.split("/")[1] if part.count("/") >= 1 else part
                            for n, _ in layers for part in n.split(";")})
            raise UserError(f"`keep_float` {pattern!r} matches no layer or op type of {where}."
                            f"{did_you_mean(pattern, names)} Op types there: "
                            f"{', '.join(sorted({op for _, op in layers}))}; layer names such as "
                            f"{', '.join(names[:6])} (`deeplab-edge quant-report` lists every quantised tensor).")
        chosen.extend(h for h in hits if h not in chosen)
    return tuple(chosen)


@dataclass(frozen=True)
class Step:
    kept: int  # layers in float after this step
    added: str  # the layer this step kept in float ('' for the start)
    miou_drop: float  # points below Keras on the held-out images
    agreement: float


@dataclass(frozen=True)
class SettingTrial:
    """One quantisation setting the automatic search measured."""

    change: str  # what differs from the target's defaults ("defaults" for the start)
    settings: dict
    miou_drop: float
    agreement: float
    p50_ms: float
    met: bool

    def to_dict(self) -> dict:
        return {"change": self.change, "settings": dict(self.settings), "miou_drop": round(self.miou_drop, 3),
                "agreement": round(self.agreement, 5), "p50_ms": round(self.p50_ms, 3), "met": self.met}


def search_settings(base: dict, candidates: Sequence[tuple[str, dict]],
                    evaluate: Callable[[dict], tuple[Verification, float]], max_drop: float,
                    progress: Callable[[str], None] = print) -> tuple[dict, tuple[SettingTrial, ...]]:
    """Measure `base` and, when it misses `max_drop`, each candidate change to it; return the fastest
    setting within the budget (else the most accurate) and every trial in order."""

    def trial(change: str, settings: dict) -> SettingTrial:
        ver, p50 = evaluate(settings)
        t = SettingTrial(change, settings, ver.miou_drop, ver.agreement, p50, ver.miou_drop <= max_drop)
        progress(f"setting {change}: mIoU drop {t.miou_drop:.2f} pt (budget {max_drop:g}), agreement "
                 f"{100 * t.agreement:.2f}%, p50 {t.p50_ms:.2f} ms")
        return t

    trials = [trial("defaults", dict(base))]
    if not trials[0].met:
        trials += [trial(change, {**base, **diff}) for change, diff in candidates]
    met = [t for t in trials if t.met]
    best = min(met, key=lambda t: t.p50_ms) if met else min(trials, key=lambda t: t.miou_drop)
    return dict(best.settings), tuple(trials)


@dataclass(frozen=True)
class Fallback:
    """What `--keep-float`/`--auto-keep-float` kept in float, each step of the search, and the cost."""

    kept: tuple[str, ...]
    steps: tuple[Step, ...]
    budget: float | None  # the mIoU-drop budget of the automatic search (None: patterns only)
    met: bool
    int8_p50_ms: float | None = None  # the all-int8 file and the file with the kept layers, same run
    kept_p50_ms: float | None = None
    settings_tried: tuple[SettingTrial, ...] = ()  # the settings search, in order, before any layer
    settings: dict = field(default_factory=dict)  # the setting chosen
    speed: object = None  # keep_float_speed.SpeedChoice: the layers kept in float for speed (tflite_int8)

    def to_dict(self) -> dict:
        out = {"kept_float": list(self.kept), "budget_miou_drop": self.budget, "met": self.met,
               "settings_tried": [t.to_dict() for t in self.settings_tried], "settings": dict(self.settings),
               "steps": [s.__dict__ for s in self.steps], "int8_p50_ms": self.int8_p50_ms,
               "kept_p50_ms": self.kept_p50_ms}
        if self.speed is not None:
            out["speed"] = self.speed.to_dict()
        return out


def search(ranked: Sequence[str] | Callable[[], Sequence[str]], start: tuple[str, ...],
           evaluate: Callable[[tuple[str, ...]], Verification], max_drop: float,
           max_layers: int = DEFAULT_MAX_KEEP_FLOAT,
           progress: Callable[[str], None] = print) -> tuple[Fallback, Verification]:
    """Keep the `ranked` layers (most harmful first) in float, one more per step on top of `start`, until
    `evaluate(kept)` is within `max_drop` mIoU points; stop as soon as it is. `ranked` may be a callable,
    called only when `start` misses the budget (ranking runs a per-layer report)."""
    kept = tuple(start)
    result = evaluate(kept)
    steps = [Step(len(kept), "", result.miou_drop, result.agreement)]
    if result.miou_drop <= max_drop:
        return Fallback(kept, tuple(steps), max_drop, True), result
    queue = [name for name in (ranked() if callable(ranked) else ranked) if name not in kept]
    while result.miou_drop > max_drop and queue and len(kept) < max_layers:
        kept = (*kept, queue.pop(0))
        result = evaluate(kept)
        steps.append(Step(len(kept), kept[-1], result.miou_drop, result.agreement))
        progress(f"keep-float step {len(steps) - 1}: {len(kept)} layer(s) float, mIoU drop "
                 f"{result.miou_drop:.2f} pt (budget {max_drop:g})")
    return Fallback(kept, tuple(steps), max_drop, result.miou_drop <= max_drop), result


def p50_ms(path: Path, *, runs: int = 30, num_threads: int | None = None) -> float:
    """Median inference time of a file at batch 1 (a few warm-up runs first), for the keep-float cost."""
    import numpy as np

    from deeplab_edge.runtime.predictor import load_predictor
    from deeplab_edge.runtime.stages import latency_stats

    pred = load_predictor(path, num_threads=num_threads)
    x = pred.prepare([np.zeros((*pred.input_size, 3), np.uint8)])[0]
    for _ in range(3):
        pred.run(x)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        pred.run(x)
        samples.append(time.perf_counter_ns() - t0)
    return latency_stats(samples).p50_ms
