"""Timing types and statistics shared by the runtime (predict's per-stage timings) and the benchmarks.

Latency statistics come from raw nanosecond samples. Percentiles use linear interpolation between
the two nearest ranks, exactly numpy's default (`numpy.percentile(..., method="linear")`): for n
sorted samples x and percentile q, the rank is h = (n - 1) * q / 100 and the value
x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).

Stats are always computed on the raw samples: nothing is clipped or dropped. Runs far above the
rest (above p75 + 3 x IQR, Tukey's "far out" fence) are counted in `outliers`, so a report can say
that a background process or a page fault disturbed some runs instead of hiding them.

Stages: "pre" (resize, normalise, quantise), "infer" (the interpreter or session call), "post"
(dequantise, argmax, resize back).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deeplab_edge.errors import UserError

__all__ = ["STAGES", "LatencyStats", "StageStats", "StageTiming", "TimingSummary", "latency_stats", "percentile",
           "stage_stats", "summarize"]

STAGES = ("pre", "infer", "post")
_STAGE_ALIASES = {"inference": "infer"}
OUTLIER_IQR_FACTOR = 3.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Percentile `q` (0..100) of already sorted values by linear interpolation (numpy's default)."""
    if not sorted_values:
        raise UserError("percentile needs at least one value; received an empty sequence.")
    if not 0 <= q <= 100:
        raise UserError(f"percentile q must be within 0..100; received {q}.")
    return float(np.percentile(np.asarray(sorted_values, dtype=np.float64), q, method="linear"))


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one step over `runs` timed runs. Every `*_ms` field is in milliseconds.

    `std_ms` is the sample standard deviation (n - 1 in the denominator; 0 for a single run).
    `fps` is 1000 / p50_ms: sequential frames per second at batch 1 from the *median* latency
    (not the mean, so a few slow runs do not move it). `outliers` counts runs above
    p75 + 3 x IQR; they are included in every statistic.
    """

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    fps: float
    outliers: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> LatencyStats:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d and n != "outliers"]
        if missing:
            raise UserError(f"Latency stats lack the keys {missing}; received keys {sorted(d)}.")
        return cls(**{n: d[n] for n in names if n in d})

    @property
    def outlier_note(self) -> str:
        """'' or e.g. '3 of 200 runs above p75 + 3 IQR (kept, not clipped)'."""
        if not self.outliers:
            return ""
        return f"{self.outliers} of {self.runs} runs above p75 + {OUTLIER_IQR_FACTOR:g} IQR (kept, not clipped)"


def latency_stats(samples_ns: Sequence[int]) -> LatencyStats:
    """Summarise raw per-run durations in nanoseconds (e.g. from `timing.time_callable`).

    Args:
        samples_ns: one duration per run, in nanoseconds, in any order.

    Returns:
        `LatencyStats` in milliseconds; see the module docstring for the percentile method.
    """
    if len(samples_ns) == 0:
        raise UserError("latency_stats needs at least one timed run; received 0 samples.")
    ms = sorted(float(s) / 1e6 for s in samples_ns)  # sorted: min/max and the fence below
    if ms[0] < 0:
        raise UserError(f"Latency samples must be durations >= 0 ns; received a minimum of {ms[0] * 1e6:g} ns.")
    n = len(ms)
    mean = math.fsum(ms) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ms) / (n - 1)) if n > 1 else 0.0
    p25, p50, p75 = percentile(ms, 25), percentile(ms, 50), percentile(ms, 75)
    fence = p75 + OUTLIER_IQR_FACTOR * (p75 - p25)
    return LatencyStats(
        runs=n,
        p50_ms=p50,
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=mean,
        std_ms=std,
        min_ms=ms[0],
        max_ms=ms[-1],
        fps=1000.0 / p50 if p50 > 0 else math.inf,
        outliers=sum(v > fence for v in ms),
    )


@dataclass(frozen=True)
class StageStats:
    """Per-stage latency of one image through pre-processing, inference and post-processing.

    Any stage may be None (not measured).
    """

    pre: LatencyStats | None = None
    infer: LatencyStats | None = None
    post: LatencyStats | None = None

    @property
    def pre_ms(self) -> float | None:
        """p50 of pre-processing in ms, or None."""
        return self.pre.p50_ms if self.pre else None

    @property
    def post_ms(self) -> float | None:
        """p50 of post-processing in ms, or None."""
        return self.post.p50_ms if self.post else None

    @property
    def pre_post_ms(self) -> float | None:
        """p50 of pre-processing plus p50 of post-processing in ms; None if neither was measured."""
        parts = [v for v in (self.pre_ms, self.post_ms) if v is not None]
        return sum(parts) if parts else None

    def to_dict(self) -> dict:
        return {s: (getattr(self, s).to_dict() if getattr(self, s) else None) for s in STAGES}


def stage_stats(samples_by_stage: Mapping[str, Sequence[int] | None]) -> StageStats:
    """Stats per stage from nanosecond samples keyed "pre", "infer" (or "inference"), "post".

    A stage that is missing, None or empty was not measured.

    Example:
        `stage_stats(time_pipeline(pre, infer, post)).pre_ms`
    """
    samples = {_STAGE_ALIASES.get(k, k): v for k, v in samples_by_stage.items()}
    unknown = sorted(set(samples) - set(STAGES))
    if unknown:
        raise UserError(f"Unknown timing stages {unknown}; valid stages: {', '.join(STAGES)}.")
    return StageStats(**{s: latency_stats(v) if v else None for s, v in samples.items()})


@dataclass(frozen=True)
class StageTiming:
    """One `Predictor.predict` batch of `images` images: nanoseconds spent in each stage."""

    images: int
    pre_ns: int = 0
    infer_ns: int = 0
    post_ns: int = 0


@dataclass(frozen=True)
class TimingSummary:
    """Per-image latency of each stage over a Predictor's recorded batches (a batch's time is shared
    equally by its images)."""

    images: int
    stages: StageStats

    @property
    def pre(self) -> LatencyStats | None:
        return self.stages.pre

    @property
    def infer(self) -> LatencyStats | None:
        return self.stages.infer

    @property
    def post(self) -> LatencyStats | None:
        return self.stages.post

    @property
    def total_mean_ms(self) -> float:
        return sum(s.mean_ms for s in (self.pre, self.infer, self.post) if s is not None)

    def to_dict(self) -> dict:
        return {"images": self.images, **self.stages.to_dict()}

    def to_text(self) -> str:
        names = {"pre": "pre", "infer": "inference", "post": "post"}
        rows = []
        for s in STAGES:
            st = getattr(self, s)
            mean, p50 = (st.mean_ms, st.p50_ms) if st is not None else (0.0, 0.0)
            rows.append(f"{names[s]:>9}: mean {mean:8.2f} ms  p50 {p50:8.2f} ms")
        return "\n".join([f"time per image over {self.images} image(s):", *rows])


def summarize(timings: Sequence[StageTiming]) -> TimingSummary:
    """Per-image stage statistics from a Predictor's batch timings."""
    n = sum(t.images for t in timings)
    samples = {s: [getattr(t, f"{s}_ns") // max(t.images, 1) for t in timings for _ in range(t.images)]
               for s in STAGES}
    return TimingSummary(n, stage_stats(samples if n else {}))
