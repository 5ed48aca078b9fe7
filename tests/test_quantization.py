"""Quantisation options: 16x8 TFLite, onnxruntime's calibration methods, calibration on unlabeled images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deeplab_edge.errors import UserError


def test_int16x8_activations_are_int16_and_the_file_verifies(exported, synthetic_folder, tmp_path):
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.tflite import op_histogram, tensor_types
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.runtime import load_predictor

    _, model, info, vx, vy = exported
    assert "tflite_int16x8" not in [f.name for f in resolve_formats(None)]  # not in the default six
    assert "tflite_int16x8" in [f.name for f in resolve_formats(["all"])]
    calib, _, _ = calibration_and_verification(scan_folder(synthetic_folder), (64, 64),
                                               resolve_formats(["tflite_int16x8"]), 16, 4)
    report = export_all(model, info, tmp_path, name="q", formats=["tflite_int16x8"], calibration=calib,
                        verify_images=vx, verify_masks=vy, progress=lambda m: None)
    (f,) = report.files
    assert f.verification.passed, f.verification.figure
    types = tensor_types(f.path)
    assert types.get("INT16", 0) > 20 and types.get("INT8", 0) > 20  # int16 activations, int8 weights
    assert "QUANTIZE" in op_histogram(f.path)
    pred = load_predictor(f.path)
    assert pred.backend.input.dtype == np.float32
    assert pred.predict([np.zeros((40, 50, 3), np.uint8)])[0].shape == (40, 50)


def test_unlabeled_folder_calibrates_onnx_entropy_and_tflite(exported, synthetic_folder, tmp_path):
    from deeplab_edge.export.calibration import calibration_from_folder
    from deeplab_edge.export.pipeline import export_all

    _, model, info, vx, vy = exported
    photos = tmp_path / "photos"  # images only: no masks anywhere
    photos.mkdir()
    for i, p in enumerate(sorted((synthetic_folder / "JPEGImages").glob("*"))[:12]):
        Image.open(p).resize((80 + i, 70)).save(photos / f"p{i}.png")
    notes = []
    calib = calibration_from_folder(photos, (64, 64), None, mean=info.mean, std=info.std, progress=notes.append)
    assert len(calib) == 12 and calib.images.shape == (12, 64, 64, 3) and "all of them" in notes[0]
    report = export_all(model, info, tmp_path / "out", name="u", formats=["tflite_int8", "onnx_int8"],
                        calibration=calib, verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        options={"calibration_method": "entropy"})
    assert all(f.verification.passed for f in report.files), report.table()
    with pytest.raises(UserError, match="has no image files"):
        calibration_from_folder(_empty(tmp_path), (64, 64), None, mean=info.mean, std=info.std)
    with pytest.raises(UserError, match="holds 12"):
        calibration_from_folder(photos, (64, 64), 50, mean=info.mean, std=info.std)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_calibration_method_is_an_onnx_int8_option():
    from deeplab_edge.export.formats import check_options, resolve_formats

    with pytest.raises(UserError, match="onnx_int8"):
        check_options(resolve_formats(["tflite_int8"]), {"calibration_method": "entropy"})
    with pytest.raises(UserError, match="minmax, percentile, entropy"):
        check_options(resolve_formats(["onnx_int8"]), {"calibration_method": "kl"})
    check_options(resolve_formats(["onnx_int8", "tflite_int8"]), {"calibration_method": "percentile"})
