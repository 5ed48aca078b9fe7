"""report.md and report.json of the main job (`deeplab-edge demo`)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from deeplab_edge.benchmarks.report import to_markdown
from deeplab_edge.benchmarks.sysinfo import machine_summary
from deeplab_edge.fileio import write_text_atomic

from .targets import check_targets, targets_markdown


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def write_job_report(out: Path, *, train, export, bench, predict, timings: dict, preset: str, config,
                     dataset) -> tuple[Path, Path]:
    out = Path(out)
    checks = check_targets(bench)
    md = [
        f"# deeplab-edge report: preset `{preset}`",
        "",
        f"Made {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `deeplab-edge demo`.  ",
        f"Machine: {machine_summary(bench.machine, threads=bench.settings.get('threads'))}",
        "",
        "## Steps",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in timings.items()),
        f"| **total** | **{sum(timings.values()):.0f}** |",
        "",
        "## Training",
        "",
        f"Dataset `{dataset.root}` ({dataset.layout} layout): {len(dataset.train)} train / {len(dataset.val)} "
        f"val images, {dataset.num_classes} classes ({', '.join(dataset.class_names)}).  ",
        f"Model: `{json.dumps(config.to_dict())}`  ",
        f"{train.epochs_run} epochs in {train.seconds:.0f} s ({train.images_per_second:.1f} img/s); best "
        f"validation mIoU **{100 * train.best_val_miou:.1f}%**.",
        "",
        f"![training curves]({_rel(train.out_dir / 'curves.png', out)})",
        "",
        "## Export and verification",
        "",
        f"Model: {export.model['params'] / 1e6:.2f} M parameters, {export.model['macs'] / 1e9:.3f} GMACs at "
        f"{export.model['input_size'][0]}x{export.model['input_size'][1]}. Keras mIoU on the verification images: "
        f"{100 * export.model['keras_miou']:.1f}%. Manifest: `{_rel(export.manifest, out)}`.",
        "",
        "| format | file | size MB | convert s | verification | result | ops |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in export.files:
        ops = ", ".join(f"{k} {v}" for k, v in list(f.ops.items())[:6])
        md.append(f"| {f.format} | `{_rel(f.path, out)}` | {f.size_bytes / 1e6:.2f} | {f.seconds:.1f} | "
                  f"{f.verification.figure} | {'PASS' if f.passed else '**FAIL**'} | {ops} |")
    md += ["", "## Benchmark", "", to_markdown(bench), "",
           f"![latency vs mIoU]({_rel(out / 'bench' / 'latency_vs_miou.png', out)})", "",
           f"![latency]({_rel(out / 'bench' / 'latency.png', out)})", "",
           "## Targets", "", targets_markdown(checks), "",
           "## Predictions on real photos", "",
           f"`deeplab-edge predict` with `{predict.model.name}` ({predict.backend}); {len(predict.written)} written, "
           f"{len(predict.failed)} failed.", ""]
    for w in predict.written:
        if w.overlay:
            md.append(f"![{w.image.name}]({_rel(w.overlay, out)})")
    md.append("")
    md.append(predict.timing.to_text().replace("\n", "  \n"))
    report_md = out / "report.md"
    write_text_atomic(report_md, "\n".join(md) + "\n")
    data = {
        "preset": preset, "config": config.to_dict(), "timings_s": timings,
        "dataset": {"root": str(dataset.root), "train": len(dataset.train), "val": len(dataset.val),
                    "class_names": list(dataset.class_names)},
        "train": train.to_dict(),
        "export": {"manifest": str(export.manifest), "model": export.model, "files": [f.to_dict() for f in export.files]},
        "bench": bench.to_dict(),
        "targets": [c.to_dict() for c in checks],
        "predict": {"model": str(predict.model), "written": [str(w.overlay or w.mask) for w in predict.written],
                    "failed": [{"path": str(f.path), "reason": f.reason} for f in predict.failed],
                    "timing": predict.timing.to_dict()},
    }
    report_json = out / "report.json"
    write_text_atomic(report_json, json.dumps(data, indent=2, default=str))
    return report_md, report_json
