"""Per-stage timings of a Predictor (pre-processing, inference, post-processing), per image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STAGES = ("pre", "inference", "post")


@dataclass(frozen=True)
class StageTiming:
    """One call over `images` images: nanoseconds spent in each stage (time.perf_counter_ns)."""

    images: int
    pre_ns: int = 0
    inference_ns: int = 0
    post_ns: int = 0


@dataclass(frozen=True)
class StageStats:
    """Milliseconds per image over the recorded calls."""

    mean_ms: float
    p50_ms: float


@dataclass(frozen=True)
class TimingSummary:
    images: int
    pre: StageStats
    inference: StageStats
    post: StageStats

    @property
    def total_mean_ms(self) -> float:
        return self.pre.mean_ms + self.inference.mean_ms + self.post.mean_ms

    def to_dict(self) -> dict:
        return {"images": self.images, **{s: vars(getattr(self, s)) for s in STAGES}}

    def to_text(self) -> str:
        rows = [f"{s:>9}: mean {getattr(self, s).mean_ms:8.2f} ms  p50 {getattr(self, s).p50_ms:8.2f} ms"
                for s in STAGES]
        return "\n".join([f"time per image over {self.images} image(s):", *rows])


def summarize(timings: list[StageTiming] | tuple[StageTiming, ...]) -> TimingSummary:
    """Mean and median per image of each stage (a batch's time is shared equally by its images)."""
    n = sum(t.images for t in timings)

    def stats(stage: str) -> StageStats:
        if not n:
            return StageStats(0.0, 0.0)
        per_image = np.repeat([getattr(t, f"{stage}_ns") / max(t.images, 1) for t in timings],
                              [t.images for t in timings]) / 1e6
        return StageStats(float(per_image.mean()), float(np.median(per_image)))

    return TimingSummary(n, *(stats(s) for s in STAGES))
