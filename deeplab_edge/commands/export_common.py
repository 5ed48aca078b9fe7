"""Loading a checkpoint with its dataset, and the calibration/verification images, for export and demo."""

from __future__ import annotations

from pathlib import Path

from deeplab_edge.errors import UserError

from ._common import open_dataset


def load_for_export(checkpoint: str, data: str | None, name: str | None):
    from deeplab_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{checkpoint} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; export takes "
                        "a segmentation model with one image input and one score output.")
    if len(model.output_shape) != 4:
        raise UserError(f"{checkpoint} outputs shape {model.output_shape}; export takes a segmentation model whose "
                        "output is (N, H, W, classes) scores (or (N, H, W, 1) for a foreground score).")
    ds = open_dataset(data or (info.extra.get("dataset") if info else None))
    channels = int(model.output_shape[-1])
    if (2 if channels == 1 else channels) != ds.num_classes:
        what = "a one-channel foreground score (2 classes)" if channels == 1 else f"{channels} classes"
        raise UserError(f"The model predicts {what} but {ds.root} has {ds.num_classes}: pass --data with the "
                        "dataset it was trained on.")
    stem = Path(checkpoint).stem
    return model, info, ds, name or (info.preset if info and info.preset else (stem if info is None else "model"))


def calibration_and_verification(ds, size, formats, calibration_count: int | None, verify_count: int,
                                 mean=None, std=None, progress=print):
    """Calibration images (when a format needs them) and held-out verification images, normalised as
    the model expects (mean/std None: the project's own normalisation). `calibration_count` None =
    min(200, training images), with a note when fewer."""
    from deeplab_edge.export.calibration import calibration_from_dataset
    from deeplab_edge.export.pipeline import DEFAULT_CALIBRATION_COUNT
    from deeplab_edge.model.data import MEAN, STD, load_arrays, normalize_np

    mean, std = (MEAN, STD) if mean is None else (mean, std)

    calibration = None
    if any(f.needs_calibration for f in formats):
        count = calibration_count
        if count is None:
            count = min(DEFAULT_CALIBRATION_COUNT, len(ds.train))
            if count < DEFAULT_CALIBRATION_COUNT:
                progress(f"note: {ds.root} has {len(ds.train)} training images; calibrating int8 on all of them "
                         f"(default {DEFAULT_CALIBRATION_COUNT})")
        calibration = calibration_from_dataset(ds, size, count, mean=mean, std=std)
    held_out = ds.val[:verify_count]
    if not held_out:
        raise UserError(f"{ds.root} has no validation images to verify exported files on; add a val split.")
    vx, vy = load_arrays(held_out, size, ds.num_classes)
    return calibration, normalize_np(vx, mean, std), vy
