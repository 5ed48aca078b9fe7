"""Latency-aware mixed precision: keep in float the layers whose int8 kernels are slower than their float
ones on this machine, when the whole file gets faster and stays within the mIoU budget.

Depthwise convolutions have no channel reduction for VNNI or Arm dot-product instructions to speed up, so
XNNPACK's int8 DEPTHWISE_CONV_2D can be slower than its float one (27.6 against 41.1 GMAC/s on a VNNI Xeon,
benchmarks/results/2026-12-01-e2e-vnni.md). The per-op profiles of the int8 file and of its float twin
(`benchmarks.profile`, each op timed alone) name the candidates; each candidate is then kept only if the
whole file, timed as a whole against the file without it, gets faster: fusion and the requantisation
around a float island can cost more than the op saves. The two files are timed paired, in alternating
rounds in one process (`benchmarks.gate.time_paired`), and a layer counts as a gain only when the 95%
interval of the ratio lies below 1 - MIN_GAIN: one p50 after another drifts by more than the gains sought.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .verify import Verification

MIN_GAIN = 0.02  # a trial must be this much faster (share of the p50) to count: below it is timing noise


@dataclass(frozen=True)
class LayerSpeed:
    """One layer's op timed alone in the int8 file and in the float one (ms, p50)."""

    name: str
    op_type: str
    int8_ms: float
    float_ms: float

    @property
    def gain_ms(self) -> float:
        return self.int8_ms - self.float_ms


@dataclass(frozen=True)
class SpeedTrial:
    added: str  # the layer(s) this trial kept in float on top of the accepted ones
    ratio: float  # p50 with them over p50 without them, paired, with its 95% interval
    low: float
    high: float
    miou_drop: float
    accepted: bool


@dataclass(frozen=True)
class SpeedChoice:
    """What the latency objective chose: the candidates, the layers kept in float for speed, every trial."""

    candidates: tuple[LayerSpeed, ...]
    kept: tuple[str, ...]
    trials: tuple[SpeedTrial, ...]

    @property
    def gain(self) -> float:
        """The measured speed-up of the whole file over the file before the speed step: the product of the
        accepted trials' paired ratios, inverted."""
        ratio = 1.0
        for t in self.trials:
            ratio *= t.ratio if t.accepted else 1.0
        return 1.0 / ratio

    def precision(self) -> dict[str, str]:
        """Each candidate layer's chosen precision."""
        return {c.name: "float" if c.name in self.kept else "int8" for c in self.candidates}

    def to_dict(self) -> dict:
        return {"candidates": [{"layer": c.name, "op_type": c.op_type, "int8_ms": round(c.int8_ms, 4),
                                "float_ms": round(c.float_ms, 4)} for c in self.candidates],
                "kept_float_for_speed": list(self.kept), "precision": self.precision(),
                "trials": [t.__dict__ for t in self.trials], "gain": round(self.gain, 4)}


def slower_in_int8(int8_ops: Mapping[str, tuple[str, float]], float_ops: Mapping[str, float],
                   layers: Sequence[str]) -> tuple[LayerSpeed, ...]:
    """The `layers` (names `keep_float` takes) whose op is slower in the int8 profile than in the float one,
    the largest loss first. `int8_ops`: name -> (op type, ms); `float_ops`: name -> ms."""
    out = [LayerSpeed(n, int8_ops[n][0], int8_ops[n][1], float_ops[n]) for n in layers
           if n in int8_ops and n in float_ops and int8_ops[n][1] > float_ops[n]]
    return tuple(sorted(out, key=lambda c: -c.gain_ms))


def speed_search(candidates: Sequence[LayerSpeed], start: tuple[str, ...],
                 evaluate: Callable[[tuple[str, ...]], Verification],
                 compare: Callable[[tuple[str, ...], tuple[str, ...]], tuple[float, float, float]],
                 max_drop: float, *, max_layers: int, min_gain: float = MIN_GAIN,
                 progress: Callable[[str], None] = print) -> SpeedChoice:
    """All candidates in float at once; if that does not pay (not faster, or over `max_drop`), one at a
    time, the largest loss first, each kept only when the whole file gets faster within the budget.
    `compare(kept, base)`: (ratio, low, high), the p50 with `kept` in float over the p50 with `base`, and
    its 95% interval; faster means `high` < 1 - `min_gain`."""
    best_kept = tuple(start)
    trials: list[SpeedTrial] = []
    todo = [c.name for c in candidates if c.name not in start][:max(0, max_layers - len(start))]

    def attempt(added: tuple[str, ...], label: str) -> bool:
        nonlocal best_kept
        kept = (*best_kept, *added)
        (ratio, low, high), ver = compare(kept, best_kept), evaluate(kept)
        ok = high < 1 - min_gain and ver.miou_drop <= max_drop
        trials.append(SpeedTrial(label, ratio, low, high, ver.miou_drop, ok))
        progress(f"speed: {label} in float: p50 ratio {ratio:.3f} (95% CI {low:.3f}-{high:.3f}), mIoU drop "
                 f"{ver.miou_drop:.2f} pt -> {'kept' if ok else 'not kept'}")
        if ok:
            best_kept = kept
        return ok

    if todo and not (len(todo) > 1 and attempt(tuple(todo), f"all {len(todo)} candidates")):
        for name in todo:
            attempt((name,), name)
    return SpeedChoice(tuple(candidates), tuple(n for n in best_kept if n not in start), tuple(trials))
