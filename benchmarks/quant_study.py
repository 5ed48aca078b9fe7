"""What the int8 studies of one float checkpoint share (benchmarks/experiments/quant_remedies.py and
calibration_sweep.py): the checkpoint with its dataset and spec, its calibration and held-out images, and
one verified file per setting, judged by numbers only.

These drive `deeplab_edge.export`, so they import TensorFlow, inside the functions only: importing this
module (and the bench library) stays TF-free.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def study_parser(doc: str, stem: str) -> argparse.ArgumentParser:
    """The arguments every int8 study takes: a float checkpoint, its data, and where the record goes
    (--out, required; the record is OUT/STEM.json and OUT/STEM.md)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoint", help="the float checkpoint")
    ap.add_argument("`data`", help="dataset (default: the one the checkpoint was trained on)")
    ap.add_argument("`per_tensor`", action="store_true", help="int8 weights with one scale per tensor")
    ap.add_argument("`verify_images`", type=int, default=200)
    ap.add_argument("`out_dir`", required=True, help="folder for the record (e.g. benchmarks/results)")
    ap.add_argument("`stem`", default=stem, help=f"record file name without suffix (default: {stem})")
    return ap


def load_study(checkpoint: str | Path, data: str | Path | None):
    """(model, info, dataset, spec) of `checkpoint`, checked to be exportable, and its dataset (`data`, else
    the one it was trained on)."""
    from deeplab_edge.export.pipeline import load_for_export
    from deeplab_edge.export.spec import model_spec

    model, info, ds, _ = load_for_export(checkpoint, data, None)
    return model, info, ds, model_spec(model, info, ds, checkpoint=checkpoint)


def study_images(model, ds, spec, calibration_count: int | None, verify_images: int):
    """(calibration, verify images, verify masks): `calibration_count` training images (None: min(200,
    available)) and `verify_images` held-out ones, as pixels, for a model normalised as its spec says."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats

    return calibration_and_verification(ds, tuple(model.input_shape[1:3]), resolve_formats(["tflite_int8"]),
                                        calibration_count, verify_images, spec.mean, spec.std)


def export_one(model, info, fmt: str, options: dict, calibration, vx, vy, spec, out: Path, *,
               budget: float | None = None, checkpoint=None):
    """One verified file (`export_all`) with `options` (the `ExportOptions` fields as a dict, as the record
    shows them), judged by numbers only: the pass limits are wide open except the auto keep-float budget."""
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.verify import Thresholds

    return export_all(model, info, out, name="m", formats=[fmt], options=ExportOptions.from_mapping(options), calibration=calibration,
                      verify_images=vx, verify_masks=vy, spec=spec, checkpoint=checkpoint, progress=lambda m: None,
                      thresholds=Thresholds(max_miou_drop=budget if budget is not None else 100.0, min_agreement=0.0))
