"""How often does the paired gate (`bench CANDIDATE --baseline BASELINE`) get it wrong, and how often would an
absolute `max_p50_ms` budget? A/A runs on a quiet machine and beside a CPU-bound neighbour, runs against
candidates of known slowdowns, and the same runs judged by an absolute budget set from a quiet run.

`python benchmarks/experiments/gate_reliability.py --baseline A.tflite --slower B.tflite [C.tflite ...] --out DIR
[--runs 30] [--max-slowdown 5%] [--max-time 60] [--threads 2] [--name NAME]`

Each gate run is what the CLI does (`gate.gate_files`: both files loaded, paired ABBA rounds until the
interval decides or `--max-time`). True ratios come from one long paired run per candidate (200 rounds).
Writes OUT/NAME.json and OUT/NAME.md (NAME: gate_reliability) beside the machine summary.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from deeplab_edge.benchmarks.evalset import synthetic_photo
from deeplab_edge.benchmarks.gate import estimate, gate_files, parse_slowdown, time_paired
from deeplab_edge.benchmarks.report import write_record
from deeplab_edge.benchmarks.sysinfo import machine_info, machine_summary

NEIGHBOUR = "import time\nwhile True:\n    sum(i * i for i in range(10000))\n"


def _neighbour(core: int) -> subprocess.Popen:
    """A CPU-bound process pinned to one core (taskset where it exists)."""
    cmd = [sys.executable, "-c", NEIGHBOUR]
    try:
        return subprocess.Popen(["taskset", "-c", str(core), *cmd])
    except FileNotFoundError:
        return subprocess.Popen(cmd)


def _true_ratio(candidate: Path, baseline: Path, threads: int) -> dict:
    from deeplab_edge.runtime.predictor import load_predictor

    pc, pb = load_predictor(candidate, num_threads=threads), load_predictor(baseline, num_threads=threads)
    xc, xb = pc.prepare([synthetic_photo()])[0], pb.prepare([synthetic_photo()])[0]
    c, b = time_paired(lambda: pc.run(xc), lambda: pb.run(xb), max_slowdown=0.0, min_rounds=200,
                       max_rounds=200, max_time_s=1e9, runs_per_round=20)
    e = estimate(c, b)
    return {"ratio": e.ratio, "low": e.low, "high": e.high, "rounds": e.rounds}


def _runs(candidate: Path, baseline: Path, n: int, slowdown: float, threads: int, max_time: float) -> list[dict]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        rep = gate_files([candidate], [baseline], max_slowdown=slowdown, threads=threads, max_time_s=max_time,
                         progress=lambda m: None)
        (p,) = rep.pairs
        out.append({"status": p.status, "ratio": p.latency.ratio, "low": p.latency.low, "high": p.latency.high,
                    "rounds": p.latency.rounds, "candidate_p50_ms": p.candidate_p50_ms,
                    "baseline_p50_ms": p.baseline_p50_ms, "spread": p.latency.baseline_spread,
                    "seconds": time.monotonic() - t0})
    return out


def _count(runs: list[dict], status: str) -> int:
    return sum(r["status"] == status for r in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, type=Path)
    ap.add_argument("--slower", nargs="+", type=Path, default=[], help="candidates slower than the baseline")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--max-slowdown", default="5%")
    ap.add_argument("--max-time", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="gate_reliability")
    ap.add_argument("--out", required=True, help="folder for the record (e.g. benchmarks/results)")
    args = ap.parse_args(argv)
    slowdown = parse_slowdown(args.max_slowdown)
    a = args.baseline
    print("A/A, quiet", flush=True)
    quiet = _runs(a, a, args.runs, slowdown, args.threads, args.max_time)
    print("A/A, a CPU-bound neighbour on core 1", flush=True)
    proc = _neighbour(1)
    try:
        busy = _runs(a, a, args.runs, slowdown, args.threads, args.max_time)
    finally:
        proc.kill()
    # An absolute budget as users write one: the quiet baseline's median p50 plus the same 5% slack.
    quiet_p50 = statistics.median(r["baseline_p50_ms"] for r in quiet[:5])
    budget = quiet_p50 * (1 + slowdown)
    flaps = sum(r["candidate_p50_ms"] > budget for r in quiet + busy)
    rows = [{"case": "A/A quiet", "runs": quiet}, {"case": "A/A neighbour", "runs": busy}]
    for f in args.slower:
        print(f"true ratio of {f.name}", flush=True)
        truth = _true_ratio(f, a, args.threads)
        print(f"{f.name} against A", flush=True)
        rows.append({"case": f"{f.name} against A", "true": truth,
                     "runs": _runs(f, a, args.runs, slowdown, args.threads, args.max_time)})
    machine = machine_info()
    doc = {"machine": machine, "max_slowdown": slowdown, "threads": args.threads, "baseline": str(a),
           "absolute_budget_ms": budget, "absolute_flaps_of_aa_runs": flaps, "cases": rows}
    lines = [f"**{machine_summary(machine, threads=args.threads)}**", "",
             f"Baseline `{a.name}`; limit {100 * slowdown:g}% (`--max-slowdown {args.max_slowdown}`); {args.runs} gate "
             f"runs per case, each as the CLI runs it (`--max-time {args.max_time:g}`).", "",
             "| case | true ratio (200 paired rounds) | pass | regression | inconclusive | median ratio | "
             "median s per run | max s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        runs = row["runs"]
        truth = row.get("true")
        t = f"{truth['ratio']:.3f} ({truth['low']:.3f}-{truth['high']:.3f})" if truth else "1 (the same file)"
        lines.append(f"| {row['case']} | {t} | {_count(runs, 'pass')} | {_count(runs, 'regression')} | "
                     f"{_count(runs, 'inconclusive')} | {statistics.median(r['ratio'] for r in runs):.3f} | "
                     f"{statistics.median(r['seconds'] for r in runs):.1f} | {max(r['seconds'] for r in runs):.1f} |")
    lines += ["", f"Absolute budget set from the quiet runs (median baseline p50 {quiet_p50:.3f} ms + "
              f"{100 * slowdown:g}% = {budget:.3f} ms), judging the candidate p50 of the same "
              f"{len(quiet) + len(busy)} A/A runs: **{flaps} failures** (every one a flap: the candidate is the "
              "baseline file)."]
    for row in rows[2:]:
        caught = sum(r["candidate_p50_ms"] > budget for r in row["runs"])
        lines.append(f"The same absolute budget on {row['case']}: {caught} of {len(row['runs'])} runs fail it.")
    write_record(Path(args.out) / args.name, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
