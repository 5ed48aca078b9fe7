"""The gate against a bench.json stored by an earlier run: accuracy always, latency only on the same machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deeplab_edge.errors import UserError

from .gate import GateReport, PairResult, Verdict, machine_noise

FINGERPRINT = ("cpu_model", "isa_summary", "machine", "cpu_count")


def fingerprint(machine: dict, threads: object) -> dict:
    """What must match for stored latency to mean anything here: CPU, ISA, CPUs, threads, runtime versions."""
    versions = machine.get("versions") or {}
    return {**{k: machine.get(k) for k in FINGERPRINT}, "threads": threads,
            **{k: versions.get(k) for k in ("onnxruntime", "ai-edge-litert")}}


def gate_stored(report, stored, *, max_slowdown: float, max_miou_drop: float | None,
                max_class_iou_drop: float | None = None, note=print) -> GateReport:
    """Gate a fresh `BenchReport` of the candidates against a stored `bench.json` of the baseline: mIoU and
    per-class IoU drops always; latency only when the machine fingerprint matches (with a warning: one
    p50 against another from another run, no interval), else refused with the reason."""
    here, there = fingerprint(report.machine, report.settings.get("threads")), \
        fingerprint(stored.machine, stored.settings.get("threads"))
    same = here == there
    if same:
        note("warning: latency against a stored bench.json: the machine fingerprint matches, but the two p50s "
             "come from different runs (no interval, drift not controlled); time both in one run for a verdict "
             "that does not flap")
    old = {r.name: r for r in stored.rows if r.ok}
    pairs = []
    for row in report.rows:
        if row.name not in old or not row.ok:
            continue
        b = old[row.name]
        if same and row.p50_ms and b.p50_ms:
            ratio = row.p50_ms / b.p50_ms
            status = "regression" if ratio > 1 + max_slowdown else "pass"
            verdict = Verdict(status, f"p50 {row.p50_ms:.3f} against the stored {b.p50_ms:.3f} ms: ratio {ratio:.3f} "
                              f"({'>' if status == 'regression' else '<='} {1 + max_slowdown:.3f}; no interval)")
        else:
            diff = ", ".join(f"{k} {there[k]!r} there, {here[k]!r} here" for k in here if here[k] != there[k])
            verdict = Verdict("pass", f"latency not gated: the stored report ran elsewhere ({diff}); time the "
                              "baseline files in this run with `baseline` FILES")
        miou = (row.miou, b.miou) if row.miou is not None and b.miou is not None else None
        miou_verdict, drops = None, None
        if miou is not None:
            drop = 100 * (miou[1] - miou[0])
            names = list(report.settings.get("class_names") or [])
            drops = {(names[i] if i < len(names) else f"class_{i}"): round(100 * (bv - cv), 3)
                     for i, (cv, bv) in enumerate(zip(row.per_class_iou or [], b.per_class_iou or [], strict=False))
                     if cv is not None and bv is not None}
            worst = max(drops.items(), key=lambda kv: kv[1]) if drops else None
            broken = []
            if max_miou_drop is not None and drop > max_miou_drop:
                broken.append(f"mIoU drop {drop:.2f} pt > {max_miou_drop:g}")
            if max_class_iou_drop is not None and worst and worst[1] > max_class_iou_drop:
                broken.append(f"{worst[0]} IoU drop {worst[1]:.2f} pt > {max_class_iou_drop:g}")
            if max_miou_drop is not None or max_class_iou_drop is not None:
                miou_verdict = Verdict("regression" if broken else "pass",
                                       "; ".join(broken) or f"mIoU {100 * miou[0]:.2f} against the stored "
                                       f"{100 * miou[1]:.2f} ({drop:+.2f} pt drop); worst class "
                                       f"{worst[0] if worst else '-'} {worst[1] if worst else 0:+.2f} pt")
        pairs.append(PairResult(row.name, row.name, f"{row.name} (stored)", None, verdict, row.p50_ms, b.p50_ms, 0.0,
                                miou, None, miou_verdict, drops))
    if not pairs:
        raise UserError(f"No row of the stored report matches the candidates: stored {', '.join(old) or 'none'}; "
                        f"now {', '.join(r.name for r in report.rows)}.")
    return GateReport(tuple(pairs), max_slowdown, max_miou_drop, report.machine, machine_noise())


def stored_baseline(baseline: Sequence[str | Path]):
    """The `BenchReport` when the one baseline is a bench.json stored by an earlier run (a .json file that is
    not an export manifest), else None (baseline model files, timed in this run)."""
    from .results import load_report

    if len(baseline) != 1 or Path(baseline[0]).suffix != ".json" or Path(baseline[0]).name == "manifest.json":
        return None
    return load_report(baseline[0])


def gate_against_stored(candidates: Sequence[str | Path], stored, *, data: str | Path | None,
                        eval_images: int = 100, threads: int | None = None, warmup: int = 5, min_runs: int = 30,
                        min_time_s: float = 3.0, flags: dict | None = None, max_slowdown: float = 0.05,
                        max_miou_drop: float | None = None, max_class_iou_drop: float | None = None,
                        progress=print) -> GateReport:
    """Bench the candidates now (the stored report's threads unless `threads`), then `gate_stored`."""
    from deeplab_edge.runtime.backends import default_threads

    from .bench import BenchSettings, bench_files

    if data is None:
        raise UserError("A stored bench.json baseline gates accuracy: pass `data` with the dataset it was scored on.")
    if threads is None:
        threads = stored.settings.get("threads") or default_threads()
    settings = BenchSettings(threads=threads, warmup=warmup, min_runs=min_runs, min_time_s=min_time_s, device="cpu")
    report = bench_files(candidates, data=data, eval_images=eval_images, settings=settings, flags=flags,
                         progress=progress)
    return gate_stored(report, stored, max_slowdown=max_slowdown, max_miou_drop=max_miou_drop,
                       max_class_iou_drop=max_class_iou_drop)
