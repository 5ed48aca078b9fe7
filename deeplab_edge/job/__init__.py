"""The main job, `deeplab-edge demo`: train -> export every format -> verify -> benchmark -> predict -> report.

    from deeplab_edge.job import DemoOptions, run_demo
    run_demo(DemoOptions(out="report", preset="edge"))

`export_models` and `bench_models` are its export and bench steps (the library's `export_checkpoint` and
`bench_files`); `report.write_job_report` writes report.md and report.json, `targets.check_targets` holds
the project's performance targets against the benchmark.
"""

from __future__ import annotations

from .run import DemoOptions, bench_models, export_models, run_demo

__all__ = ["DemoOptions", "bench_models", "export_models", "run_demo"]
