"""Benchmark library: timing, statistics, machine facts, result rows, reports, plots, CI budgets.

TF-free: nothing here imports TensorFlow or Keras, and matplotlib is imported only inside the
plot functions. Measuring a Keras model is the caller's job (it passes a callable to time).

    samples = time_callable(lambda: runner(x), warmup=5, min_runs=20, min_time_s=2.0)
    row = BenchRow(name="tflite_int8", format="tflite", backend="litert", threads=2,
                   latency=latency_stats(samples), size_mb=1.2, miou=0.61)
    report = BenchReport(rows=(row,), machine=machine_info(), settings={"threads": 2})
    report.write_json("bench.json"); write_markdown(report, "bench.md")
    violations = check_budget(report, load_budget("budget.json"))

What `deeplab-edge bench` does, from Python (each row in its own worker process):

    report = bench_files(["exported/manifest.json"], settings=BenchSettings(threads=2))
    write_outputs(report, "bench")   # bench.json, bench.md, plots
"""

from __future__ import annotations

from deeplab_edge.runtime.stages import LatencyStats, StageStats, latency_stats, percentile, stage_stats

from .bench import BENCH_DEVICES, BenchSettings, bench_files, write_outputs
from .budget import LIMITS, Budget, Violation, check_budget, format_violations, load_budget
from .report import to_markdown, to_terminal, write_markdown
from .results import BenchReport, BenchRow, add_miou_drop, load_report
from .sysinfo import isa_summary, machine_info, machine_summary
from .timing import (
    MemoryUse,
    measure_peak_rss,
    peak_rss_mb,
    peak_rss_source,
    rss_mb,
    time_callable,
    time_pipeline,
)

__all__ = [
    "BENCH_DEVICES",
    "LIMITS",
    "BenchReport",
    "BenchRow",
    "BenchSettings",
    "Budget",
    "LatencyStats",
    "MemoryUse",
    "StageStats",
    "Violation",
    "add_miou_drop",
    "bench_files",
    "check_budget",
    "format_violations",
    "isa_summary",
    "latency_stats",
    "load_budget",
    "load_report",
    "machine_info",
    "machine_summary",
    "measure_peak_rss",
    "peak_rss_mb",
    "peak_rss_source",
    "percentile",
    "rss_mb",
    "stage_stats",
    "time_callable",
    "time_pipeline",
    "to_markdown",
    "to_terminal",
    "write_markdown",
    "write_outputs",
]
# Plots live in `deeplab_edge.benchmarks.plots` (needs matplotlib): plot_latency_vs_miou, plot_latency_bars.
