"""A paired latency gate: candidate against baseline on the same machine, in the same run.

Absolute budgets (`max_p50_ms`) hold only on the machine they were written on; the question a reviewer
asks is relative: is the candidate slower than what ships now, here, today? So both files are timed in
one process, with the same threads and input, in short rounds whose order alternates (A B, B A, ...:
ABBA), so that drift and noisy neighbours hit both alike. Each round gives one paired ratio
candidate/baseline (the median of its runs over the median of the baseline's runs in that round).

The estimate is the geometric mean of the round ratios, and its confidence interval comes from a
bootstrap over rounds (rounds, not runs, are the independent unit: runs within a round share the
machine's state). The verdict against a limit L (`--max-slowdown 5%`: L = 1.05):
- regression: the interval's lower bound is above L (the evidence says slower than allowed);
- pass: its upper bound is at or below L;
- otherwise more rounds are timed, up to a time cap, and then the verdict is "inconclusive", with why;
- "noisy" (inconclusive too) when the baseline's own round-to-round spread exceeds the limit's margin:
  no verdict a machine that noisy could support.

Exit codes of `deeplab-edge bench --baseline`: 0 pass, 1 regression, 3 inconclusive, 2 usage error.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
CONFIDENCE = 0.95
ROUND_S = 0.15  # seconds of runs per file per round: a round's median steadies with ~0.1 s of runs


def parse_slowdown(text: str | float) -> float:
    """'5%' or '0.05' -> 0.05 (the allowed relative slowdown)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UserError(f"`max_slowdown` takes a percentage such as 5% (or a fraction such as 0.05); received "
                        f"{text!r}.") from None
    if not 0 <= value < 10:
        raise UserError(f"`max_slowdown` must lie between 0% and 1000%; received {text!r}.")
    return value


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float  # geometric mean of the paired round ratios, candidate / baseline
    low: float
    high: float
    rounds: int
    baseline_spread: float  # the baseline's median relative change between adjacent rounds

    def to_dict(self) -> dict:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def estimate(candidate: Sequence[float], baseline: Sequence[float], *, confidence: float = CONFIDENCE,
             resamples: int = 4000, seed: int = 0) -> RatioEstimate:
    """The candidate/baseline ratio from paired per-round times (ms), with a bootstrap interval over rounds."""
    c, b = np.asarray(candidate, float), np.asarray(baseline, float)
    if c.shape != b.shape or c.size < 2 or (c <= 0).any() or (b <= 0).any():
        raise UserError(f"The gate needs >= 2 paired positive round times; received {c.size} and {b.size}.")
    logs = np.log(c / b)
    rng = np.random.default_rng(seed)
    means = logs[rng.integers(0, logs.size, (resamples, logs.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    # The baseline's own noise: the typical change between adjacent rounds (slow drift, which pairing
    # cancels, hardly moves it; a noisy neighbour does).
    spread = float(np.median(np.abs(np.diff(np.log(b)))))
    return RatioEstimate(float(math.exp(logs.mean())), float(math.exp(lo)), float(math.exp(hi)), int(c.size),
                         spread)


@dataclass(frozen=True)
class Verdict:
    status: str  # pass, regression, inconclusive
    reason: str


def judge(est: RatioEstimate, max_slowdown: float) -> Verdict:
    """Pass, regression or inconclusive for one estimate against 1 + max_slowdown."""
    limit = 1 + max_slowdown
    interval = f"ratio {est.ratio:.3f} (95% CI {est.low:.3f}-{est.high:.3f}, {est.rounds} rounds)"
    if est.baseline_spread > max_slowdown:
        return Verdict("inconclusive", f"machine too noisy: the baseline alone varies +-{100 * est.baseline_spread:.1f}% "
                       f"between rounds, more than the {100 * max_slowdown:g}% limit; {interval}")
    if est.low > limit:
        return Verdict("regression", f"slower than allowed: {interval} > {limit:.3f}")
    if est.high <= limit:
        return Verdict("pass", f"within the limit: {interval} <= {limit:.3f}")
    return Verdict("inconclusive", f"the interval straddles the limit {limit:.3f}: {interval}")


def time_paired(run_candidate: Callable[[], object], run_baseline: Callable[[], object], *,
                max_slowdown: float, runs_per_round: int | None = None, min_rounds: int = 10,
                max_rounds: int = 200, max_time_s: float = 60.0, warmup: int = 5, round_s: float = ROUND_S,
                clock: Callable[[], int] = time.perf_counter_ns) -> tuple[list[float], list[float]]:
    """Per-round median times (ms) of both callables, rounds in ABBA order; after `min_rounds`, stops as
    soon as `judge` is not inconclusive, else at `max_rounds` or `max_time_s`. `runs_per_round` None: as
    many runs as fill `round_s` seconds per file (10-500), so that a round's median is steady."""
    t0 = clock()
    for _ in range(warmup):
        run_candidate()
        run_baseline()
    if runs_per_round is None:
        per_pair_s = max((clock() - t0) / 1e9 / max(warmup, 1), 1e-6)
        runs_per_round = int(min(500, max(10, math.ceil(2 * round_s / per_pair_s))))

    def block(fn) -> float:
        samples = []
        for _ in range(runs_per_round):
            t0 = clock()
            fn()
            samples.append(clock() - t0)
        return float(np.median(samples)) / 1e6

    cand: list[float] = []
    base: list[float] = []
    start = time.monotonic()
    for r in range(max_rounds):
        if r % 2 == 0:
            cand.append(block(run_candidate))
            base.append(block(run_baseline))
        else:
            base.append(block(run_baseline))
            cand.append(block(run_candidate))
        if len(cand) >= min_rounds and (len(cand) % 2 == 0):
            if judge(estimate(cand, base), max_slowdown).status != "inconclusive":
                break
            if time.monotonic() - start > max_time_s:
                break
    return cand, base


@dataclass(frozen=True)
class PairResult:
    name: str
    candidate: str
    baseline: str
    latency: RatioEstimate | None  # None: not timed side by side (a stored baseline)
    verdict: Verdict
    candidate_p50_ms: float | None
    baseline_p50_ms: float | None
    seconds: float
    miou: tuple[float, float] | None = None  # (candidate, baseline) on the evaluation set
    agreement: float | None = None  # share of pixels whose labels the two files agree on
    miou_verdict: Verdict | None = None
    class_drops: dict | None = None  # class name -> IoU drop in points (a stored baseline)

    def to_dict(self) -> dict:
        out = {"name": self.name, "candidate": self.candidate, "baseline": self.baseline,
               "latency": self.latency.to_dict() if self.latency else None, "verdict": self.verdict.__dict__,
               "candidate_p50_ms": self.candidate_p50_ms, "baseline_p50_ms": self.baseline_p50_ms,
               "seconds": round(self.seconds, 2)}
        if self.miou is not None:
            out.update(miou_candidate=self.miou[0], miou_baseline=self.miou[1], agreement=self.agreement,
                       miou_verdict=self.miou_verdict.__dict__ if self.miou_verdict else None)
        if self.class_drops is not None:
            out["class_iou_drops"] = self.class_drops
        return out

    @property
    def status(self) -> str:
        """The pair's worst verdict: regression > inconclusive > pass."""
        found = {self.verdict.status, self.miou_verdict.status if self.miou_verdict else "pass"}
        return next(s for s in ("regression", "inconclusive", "pass") if s in found)


@dataclass(frozen=True)
class GateReport:
    pairs: tuple[PairResult, ...]
    max_slowdown: float | None  # None: per row, from a budget file
    max_miou_drop: float | None
    machine: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        found = {p.status for p in self.pairs}
        return next(s for s in ("regression", "inconclusive", "pass") if s in found)

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "regression": EXIT_REGRESSION, "inconclusive": EXIT_INCONCLUSIVE}[self.status]

    def to_dict(self) -> dict:
        return {"status": self.status, "max_slowdown": self.max_slowdown, "max_miou_drop": self.max_miou_drop,
                "machine": self.machine, "noise": self.noise, "pairs": [p.to_dict() for p in self.pairs]}


def machine_noise() -> dict:
    """Load average and CPU steal (share of time since boot) where the kernel exposes them."""
    out: dict = {}
    try:
        out["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        pass
    try:
        fields = open("/proc/stat").readline().split()[1:]
        values = [int(v) for v in fields]
        if len(values) >= 8 and sum(values):
            out["steal_share_since_boot"] = round(values[7] / sum(values), 4)
    except (OSError, ValueError):
        pass
    return out


def gate_files(candidates: Sequence[str | Path], baselines: Sequence[str | Path], *,
               max_slowdown: float | Callable[[str], float], max_miou_drop: float | Callable[[str], float | None] | None = None, data: str | Path | None = None, eval_images: int = 50,
               threads: int | None = None, max_time_s: float = 60.0, min_rounds: int = 10,
               runs_per_round: int | None = None, progress=print) -> GateReport:
    """Gate each candidate file against the baseline of the same row name (`bench.row_name`: the format
    name from a manifest, else one from the file name): paired ABBA timing in this process, and with
    `data`, both files' mIoU on its validation split and their mask agreement. `max_time_s` caps each pair.
    The limits are numbers, or callables of the row name (a budget file's per-row values)."""
    from deeplab_edge.metrics import agreement, segmentation_metrics
    from deeplab_edge.runtime.backends import default_threads
    from deeplab_edge.runtime.predictor import load_predictor

    from .bench import targets_from
    from .evalset import load_eval, synthetic_photo
    from .sysinfo import machine_info

    threads = default_threads() if threads is None else threads
    if threads <= 0 or eval_images <= 0 or max_time_s <= 0:
        raise UserError("`num_threads`, `eval_images` and `max_time` must be positive.")
    cand = {t.name: t for t in targets_from([Path(c) for c in candidates], None)}
    base = {t.name: t for t in targets_from([Path(b) for b in baselines], None)}
    if len(base) == 1 and len(cand) == 1 and set(base) != set(cand):  # one file each: pair them whatever the names
        base = {next(iter(cand)): next(iter(base.values()))}
    missing = sorted(set(cand) - set(base))
    if missing or not cand:
        raise UserError(f"No baseline for {', '.join(missing) or 'any candidate'}: rows pair by format name "
                        f"(candidates {', '.join(cand) or 'none'}; baselines {', '.join(base) or 'none'}). Pass the "
                        "two exports' manifest.json files, or one file each.")
    eval_set = None
    if data is None and max_miou_drop is not None and not callable(max_miou_drop):
        progress("note: `max_miou_drop` needs `data` (the dataset to score both files on); accuracy is not gated")
    if data is not None:
        from deeplab_edge.model.data import open_dataset

        eval_set = open_dataset(data)
    photo = synthetic_photo()
    evals: dict[tuple[int, int], tuple] = {}  # input size -> (images, masks): loaded once per size
    pairs = []
    for name, ct in cand.items():
        bt = base[name]
        slowdown = max_slowdown(name) if callable(max_slowdown) else max_slowdown
        miou_limit = max_miou_drop(name) if callable(max_miou_drop) else max_miou_drop
        pc, pb = load_predictor(ct.file, num_threads=threads), load_predictor(bt.file, num_threads=threads)
        if pc.input_size != pb.input_size:
            progress(f"note: {name}: the two files take different input sizes ({pc.input_size} against "
                     f"{pb.input_size}); each is timed at its own")
        xc, xb = pc.prepare([photo])[0], pb.prepare([photo])[0]
        progress(f"{name}: timing {ct.file} against {bt.file} in paired rounds (up to {max_time_s:g} s)")
        t0 = time.monotonic()
        c_rounds, b_rounds = time_paired(lambda p=pc, x=xc: p.run(x), lambda p=pb, x=xb: p.run(x),
                                         max_slowdown=slowdown, max_time_s=max_time_s, min_rounds=min_rounds,
                                         runs_per_round=runs_per_round)
        est = estimate(c_rounds, b_rounds)
        miou = agree = miou_verdict = None
        if eval_set is not None:
            if pc.input_size not in evals:
                evals[pc.input_size] = load_eval(eval_set, pc.input_size, eval_images)[:2]
            images, masks = evals[pc.input_size]
            lc, lb = np.stack(pc.predict(list(images))), np.stack(pb.predict(list(images)))
            n = eval_set.num_classes
            miou = (segmentation_metrics(masks, lc, n).miou, segmentation_metrics(masks, lb, n).miou)
            agree = agreement(lc, lb)
            if miou_limit is not None:
                drop = 100 * (miou[1] - miou[0])
                miou_verdict = Verdict("regression" if drop > miou_limit else "pass",
                                       f"mIoU {100 * miou[0]:.2f} against {100 * miou[1]:.2f} ({drop:+.2f} pt drop, "
                                       f"limit {miou_limit:g}) on {len(images)} images of {eval_set.root}")
        pairs.append(PairResult(name, str(ct.file), str(bt.file), est, judge(est, slowdown),
                                float(np.median(c_rounds)), float(np.median(b_rounds)), time.monotonic() - t0,
                                miou, agree, miou_verdict))
        progress(f"{name}: {pairs[-1].verdict.reason}")
    return GateReport(tuple(pairs), max_slowdown if not callable(max_slowdown) else None,
                      max_miou_drop if not callable(max_miou_drop) else None, machine_info(), machine_noise())
