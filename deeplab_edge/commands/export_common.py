"""Loading a checkpoint with its dataset, and the calibration/verification images, for export and demo."""

from __future__ import annotations

from deeplab_edge.errors import UserError

from ._common import open_dataset


def load_for_export(checkpoint: str, data: str | None, name: str | None):
    from deeplab_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    ds = open_dataset(data or (info.extra.get("dataset") if info else None))
    if model.output_shape[-1] != ds.num_classes:
        raise UserError(f"The checkpoint predicts {model.output_shape[-1]} classes but {ds.root} has "
                        f"{ds.num_classes}: pass --data with the dataset it was trained on.")
    return model, info, ds, name or (info.preset if info and info.preset else "model")


def calibration_and_verification(ds, size, formats, calibration_count: int, verify_count: int):
    from deeplab_edge.export.calibration import calibration_from_dataset
    from deeplab_edge.model.data import load_arrays, normalize_np

    calibration = None
    if any(f.needs_calibration for f in formats):
        calibration = calibration_from_dataset(ds, size, calibration_count)
    held_out = ds.val[:verify_count]
    if not held_out:
        raise UserError(f"{ds.root} has no validation images to verify exported files on; add a val split.")
    vx, vy = load_arrays(held_out, size, ds.num_classes)
    return calibration, normalize_np(vx), vy
