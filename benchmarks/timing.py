"""Timing loops and process memory, with `time.perf_counter_ns` (monotonic, nanosecond resolution).

Never `time.time()`: it follows the wall clock, which NTP may step while a benchmark runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from deeplab_edge.errors import UserError

__all__ = [
    "MemoryUse",
    "measure_peak_rss",
    "peak_rss_mb",
    "peak_rss_source",
    "predictor_p50_ms",
    "rss_mb",
    "time_callable",
    "time_files",
    "time_pipeline",
    "time_predictor_stages",
]

T = TypeVar("T")


def _check_loop_args(warmup: int, min_runs: int, min_time_s: float, max_runs: int) -> None:
    if warmup < 0:
        raise UserError(f"warmup must be >= 0 runs; received {warmup}.")
    if min_runs < 1:
        raise UserError(f"min_runs must be >= 1; received {min_runs}.")
    if min_time_s < 0:
        raise UserError(f"min_time_s must be >= 0 seconds; received {min_time_s}.")
    if max_runs < min_runs:
        raise UserError(f"max_runs ({max_runs}) must be >= min_runs ({min_runs}); raise max_runs or lower min_runs.")


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 5,
    min_runs: int = 20,
    min_time_s: float = 2.0,
    max_runs: int = 10000,
) -> list[int]:
    """Time `fn()` repeatedly and return one duration per timed run, in nanoseconds.

    Runs `warmup` untimed calls first (first-call allocation, XNNPACK packing, caches), then timed
    calls until BOTH `min_runs` runs and `min_time_s` seconds of timed loop are reached, or
    `max_runs` runs, whichever comes first.

    Args:
        fn: the step to time, called with no arguments; bind inputs with a lambda or functools.partial.
        warmup: untimed calls before timing.
        min_runs: at least this many timed runs.
        min_time_s: keep running until the timed loop has lasted this long.
        max_runs: hard cap on timed runs (bounds a very fast `fn`).
    """
    _check_loop_args(warmup, min_runs, min_time_s, max_runs)
    clock = time.perf_counter_ns
    for _ in range(warmup):
        fn()
    min_time_ns = int(min_time_s * 1e9)
    samples: list[int] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        if len(samples) >= max_runs or (len(samples) >= min_runs and t1 - start >= min_time_ns):
            return samples


def time_pipeline(
    pre: Callable[[], Any],
    infer: Callable[[Any], Any],
    post: Callable[[Any], Any] | None = None,
    *,
    warmup: int = 5,
    min_runs: int = 20,
    min_time_s: float = 2.0,
    max_runs: int = 10000,
) -> dict[str, list[int]]:
    """Time each stage of `post(infer(pre()))` per run, in nanoseconds.

    Same stopping rule as `time_callable`, on the time of the whole pipeline.

    Returns:
        {"pre": [...], "infer": [...], "post": [...]} (no "post" key when `post` is None);
        feed it to `stats.summarize`.
    """
    _check_loop_args(warmup, min_runs, min_time_s, max_runs)
    clock = time.perf_counter_ns
    for _ in range(warmup):
        y = infer(pre())
        if post is not None:
            post(y)
    out: dict[str, list[int]] = {"pre": [], "infer": []}
    if post is not None:
        out["post"] = []
    min_time_ns = int(min_time_s * 1e9)
    start = clock()
    while True:
        t0 = clock()
        x = pre()
        t1 = clock()
        y = infer(x)
        t2 = clock()
        out["pre"].append(t1 - t0)
        out["infer"].append(t2 - t1)
        t3 = t2
        if post is not None:
            post(y)
            t3 = clock()
            out["post"].append(t3 - t2)
        n = len(out["infer"])
        if n >= max_runs or (n >= min_runs and t3 - start >= min_time_ns):
            return out


def predictor_p50_ms(pred, min_time_s: float = 2.0) -> float:
    """Inference-only p50 (ms) of an opened `Predictor`: one interpreter/session run at batch 1 on a
    model-size input, after 3 warm-up runs, over at least 15 runs and `min_time_s` seconds."""
    import numpy as np

    from deeplab_edge.runtime.stages import latency_stats

    x = pred.prepare([np.zeros((*pred.input_size, 3), np.uint8)])[0].copy()
    return latency_stats(time_callable(lambda: pred.run(x), warmup=3, min_runs=15, min_time_s=min_time_s)).p50_ms


def time_files(files: dict[str, os.PathLike | str], threads: int, min_time_s: float = 2.0) -> dict[str, float]:
    """`predictor_p50_ms` of each named exported file (name -> path), opened with `threads`, one after another."""
    from deeplab_edge.runtime.predictor import load_predictor

    return {name: predictor_p50_ms(load_predictor(path, num_threads=threads), min_time_s)
            for name, path in files.items()}


# ---------------------------------------------------------------------------------------- memory


def time_predictor_stages(pred, image, *, warmup: int = 2, min_runs: int = 10, min_time_s: float = 1.0):
    """Per-stage latency (`runtime.stages.StageStats`) of `Predictor.predict`'s three stages on one RGB
    image at its own size: pre (resize, plus normalise and quantise unless the file takes pixels),
    inference, post (labels from the raw output, one resize back to the image)."""
    from deeplab_edge.runtime.stages import stage_stats

    return stage_stats(time_pipeline(lambda: pred.prepare([image]), lambda x: (pred.run(x[0]), x[1]),
                                     lambda y: pred.labels(*y), warmup=warmup, min_runs=min_runs,
                                     min_time_s=min_time_s))


def _psutil_process():
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process()


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (/proc/self/statm, else psutil), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    proc = _psutil_process()
    return proc.memory_info().rss / 2**20 if proc is not None else None


def _ru_maxrss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10


def peak_rss_source() -> str:
    """Which counter `peak_rss_mb` reads on this platform."""
    if _vmhwm_mb() is not None:
        return "/proc/self/status VmHWM (high-water mark of this process image)"
    if _ru_maxrss_mb() is not None:
        return "resource.getrusage ru_maxrss (process high-water mark)"
    proc = _psutil_process()
    if proc is not None and hasattr(proc.memory_info(), "peak_wset"):
        return "psutil peak_wset (process high-water mark)"
    if proc is not None:
        return "psutil rss (current, not peak: no high-water mark on this platform)"
    return "unavailable"


def _vmhwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB; see `peak_rss_source()` for the counter.

    Linux: `VmHWM` of /proc/self/status, the high-water mark of this process image. (`ru_maxrss`
    is not used there: it survives fork+exec, so a worker started by a big parent reports the
    parent's peak; measured here: 6387 MB for every worker of the demo.) Elsewhere the kernel's
    `ru_maxrss` (macOS), psutil's `peak_wset` (Windows), else psutil's current RSS; None if none.
    """
    peak = _vmhwm_mb()
    if peak is None:
        peak = _ru_maxrss_mb()
    if peak is not None:
        return peak
    proc = _psutil_process()
    if proc is None:
        return None
    info = proc.memory_info()
    return getattr(info, "peak_wset", info.rss) / 2**20


@dataclass(frozen=True)
class MemoryUse:
    """Resident memory around one step, in MiB.

    `added_mb` = `peak_mb` - `before_mb`: the most memory the step held at once on top of what the
    process already held. `peak_mb` is the larger of the RSS sampled every `interval_s` during the
    step and, when the step set a new process high-water mark, that mark (exact even for spikes
    shorter than the sampling interval).
    """

    before_mb: float
    peak_mb: float
    after_mb: float
    added_mb: float
    interval_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_peak_rss(fn: Callable[[], T], *, interval_s: float = 0.005) -> tuple[T, MemoryUse | None]:
    """Run `fn()` once while a background thread samples RSS; return (fn's result, `MemoryUse`).

    The `MemoryUse` is None when this platform offers no RSS reading (no /proc and no psutil).
    """
    if interval_s <= 0:
        raise UserError(f"interval_s must be > 0 seconds; received {interval_s}.")
    before = rss_mb()
    if before is None:
        return fn(), None
    hwm_before = _ru_maxrss_mb()
    samples = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            v = rss_mb()
            if v is not None:
                samples.append(v)

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        stop.set()
        thread.join()
    after = rss_mb() or before
    peak = max(max(samples), after)
    hwm_after = _ru_maxrss_mb()
    if hwm_before is not None and hwm_after is not None and hwm_after > hwm_before:
        peak = max(peak, hwm_after)
    return result, MemoryUse(before_mb=before, peak_mb=peak, after_mb=after,
                             added_mb=max(0.0, peak - before), interval_s=interval_s)
