"""Export of a tiny trained model: every format converts, loads, passes verification; int8 is integer;
metadata round-trips; interrupted writes leave nothing; bad options and calibration are refused."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deeplab_edge.errors import UserError


def test_every_format_written_and_verified(exported):
    report = exported[0]
    assert [f.format for f in report.files] == ["tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8",
                                                "onnx_fp32", "onnx_int8"]
    for f in report.files:
        assert f.path.is_file() and f.size_bytes == f.path.stat().st_size
        assert f.verification.passed, (f.format, f.verification)
    by = {f.format: f.verification for f in report.files}
    assert by["tflite_fp32"].rel_diff < 1e-4 and by["onnx_fp32"].rel_diff < 1e-4
    assert by["tflite_int8"].agreement > 0.95 and by["onnx_int8"].agreement > 0.95
    assert report.model["keras_miou"] > 0.3  # a trained model: agreement numbers mean something
    table = report.table()
    assert "tflite_int8" in table and "PASS" in table


def test_manifest_lists_files_with_hashes(exported):
    from deeplab_edge.fileio import sha256

    report = exported[0]
    manifest = json.loads(report.manifest.read_text())
    assert manifest["model"]["macs"] > 0 and manifest["model"]["params"] > 0
    for entry, f in zip(manifest["files"], report.files, strict=True):
        assert entry["sha256"] == sha256(f.path) and entry["size_bytes"] == f.size_bytes
        assert entry["verification"]["passed"] is True and entry["conversion_seconds"] > 0
        assert entry["ops"]
    tfl = next(e for e in manifest["files"] if e["format"] == "tflite_fp32")
    assert "SPACE_TO_BATCH_ND" not in tfl["ops"]


def test_int8_files_are_really_integer(exported):
    from deeplab_edge.export.onnx import onnx_initializer_types, onnx_op_histogram
    from deeplab_edge.export.tflite import op_histogram, tensor_types

    files = {f.format: f.path for f in exported[0].files}
    types = tensor_types(files["tflite_int8"])
    # Default: uint8 pixels in, float32 out (what MediaPipe Tasks accepts): one QUANTIZE (uint8 -> int8) in,
    # one DEQUANTIZE out, every tensor in between int8.
    assert types.get("UINT8") == 1 and types.get("FLOAT32") == 1 and types.get("INT8", 0) > 50
    ops = op_histogram(files["tflite_int8"])
    assert ops.get("QUANTIZE") == 1 and ops.get("DEQUANTIZE") == 1 and "MUL" not in ops
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(files["tflite_int8"]))
    assert it.get_input_details()[0]["dtype"] == np.uint8 and it.get_output_details()[0]["dtype"] == np.float32
    ops = onnx_op_histogram(files["onnx_int8"])
    assert ops.get("QuantizeLinear", 0) > 5 and ops.get("DequantizeLinear", 0) > 10
    assert onnx_initializer_types(files["onnx_int8"]).get("INT8", 0) > 10
    assert tensor_types(files["tflite_dynamic"]).get("INT8", 0) > 0
    assert tensor_types(files["tflite_fp16"]).get("FLOAT16", 0) > 0


def test_metadata_round_trips(exported):
    from deeplab_edge.runtime.predictor import load_predictor

    report, _, info = exported[:3]
    for f in report.files:
        meta = load_predictor(f.path).meta
        assert meta.class_names == info.class_names and meta.input_size == (64, 64)
        assert meta.variant == f.format and meta.preset == "tiny" and meta.version
        assert meta.config["separable"] is True
        # What each file's input takes: ONNX normalised floats (the model's own normalisation); TFLite
        # float files raw pixels (normalised inside); tflite_int8 pixels through its input quantisation.
        if f.format.startswith("onnx"):
            assert (meta.mean, meta.std) == (tuple(info.mean), tuple(info.std)), f.format
        elif f.format == "tflite_int8":
            assert (meta.mean, meta.std) == ((float(round(info.mean[0])),) * 3, tuple(info.std))
        else:
            assert (meta.mean, meta.std) == ((0.0,) * 3, (1.0,) * 3), f.format
    assert report.model["mean"] == list(info.mean) and report.model["pixel_input"] is True


def test_refuses_overwrite_without_force(exported, trained_tiny):
    from deeplab_edge.export.pipeline import export_all

    report, model, info, vx, vy = exported
    with pytest.raises(UserError, match="`force`"):
        export_all(model, info, report.out_dir, name="tiny", formats=["tflite_fp32"], verify_images=vx,
                   verify_masks=vy, progress=lambda m: None)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    from deeplab_edge import fileio as io

    target = tmp_path / "m.tflite"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_bytes_atomic(target, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_conversion_leaves_no_file(exported, tmp_path, monkeypatch):
    from deeplab_edge.export import onnx as onnx_mod
    from deeplab_edge.export.pipeline import export_all

    _, model, info, vx, vy = exported

    def fail(proto, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("onnx.save", fail)
    with pytest.raises(KeyboardInterrupt):
        export_all(model, info, tmp_path, name="x", formats=["onnx_fp32"], verify_images=vx, verify_masks=vy,
                   progress=lambda m: None)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".onnx" or ".partial" in p.name]
    assert onnx_mod  # module imported


def test_refused_options_and_typos_before_work():
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.options import ExportOptions

    with pytest.raises(UserError, match=r"Did you mean: tflite_int8"):
        resolve_formats(["tflite_int"])
    with pytest.raises(UserError, match=r"`io_type`.*applies to tflite_int8 only"):
        ExportOptions(io_type="uint8").check(resolve_formats(["onnx_fp32", "tflite_fp16"]))
    with pytest.raises(UserError, match="`opset`.*applies to onnx_fp32, onnx_int8 only"):
        ExportOptions(opset=13).check(resolve_formats(["tflite_fp32"]))
    ExportOptions(io_type="uint8", calibration_count=5).check(resolve_formats(["tflite_int8"]))
    with pytest.raises(UserError, match=r"Unknown export option 'io_typ'.*Did you mean: io_type"):
        ExportOptions.from_mapping({"io_typ": "uint8"})


def test_library_errors_name_parameters_and_the_cli_names_flags():
    import argparse

    from deeplab_edge.commands._flags import as_flags
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.options import ExportOptions

    with pytest.raises(UserError) as e:
        ExportOptions(calibration_count=0).check(resolve_formats(["tflite_int8"]))
    assert "`calibration_count` must be positive" in str(e.value)
    p = argparse.ArgumentParser()
    p.add_argument("--calibration-images", dest="calibration_count")
    p.add_argument("--pixel-input", dest="pixel_input", action="store_true")
    p.add_argument("--no-pixel-input", dest="pixel_input", action="store_false")
    p.add_argument("--threads")
    assert as_flags(str(e.value), p).startswith("--calibration-images must be positive")
    assert as_flags("use `pixel_input=False`, `num_threads` and `unknown`", p) == \
        "use --no-pixel-input, --threads and `unknown`"


def test_calibration_errors(synthetic_folder, tmp_path):
    from deeplab_edge.export.calibration import calibration_from_dataset
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.demo_data import synthetic_arrays, write_folder

    ds = scan_folder(synthetic_folder)
    with pytest.raises(UserError, match=r"Asked for 500 calibration images but .* has only 80"):
        calibration_from_dataset(ds, (64, 64), 500, mean=(0.0,) * 3, std=(1.0,) * 3)
    x, y = synthetic_arrays(3, 64)
    empty = write_folder(x, y, tmp_path / "d", layout="plain", val_count=3)
    (empty / "train.txt").write_text("")
    with pytest.raises(UserError, match="No training images|calibration set is empty"):
        calibration_from_dataset(scan_folder(empty), (64, 64), 10, mean=(0.0,) * 3, std=(1.0,) * 3)


def test_uint8_io_int8_tflite(exported, tmp_path):
    from deeplab_edge.export.calibration import Calibration
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.runtime.predictor import load_predictor

    _, model, info, vx, vy = exported
    rep = export_all(model, info, tmp_path, name="u", formats=["tflite_int8"], options=ExportOptions(io_type="uint8"),
                     calibration=Calibration(vx, "val", info.mean, info.std), verify_images=vx, verify_masks=vy, progress=lambda m: None,
                     head="labels")
    f = rep.files[0]
    pred = load_predictor(f.path)
    assert pred.meta.output == "labels"
    assert pred.backend.input.dtype == np.uint8 and pred.backend.input.scale and pred.backend.input.scale > 0
    assert 0 <= pred.backend.input.zero_point <= 255  # from the calibrated range of the normalised input
    assert f.verification.agreement > 0.95


def test_unsafe_checkpoint_refused(tmp_path):
    from deeplab_edge.model._keras import keras
    from deeplab_edge.model.checkpoint import load_checkpoint

    inp = keras.Input((8, 8, 3))
    m = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    m.save(tmp_path / "lam.keras")
    with pytest.raises(UserError, match="unsafe"):
        load_checkpoint(tmp_path / "lam.keras")
    m.save(tmp_path / "lam.h5")
    with pytest.raises(UserError, match="Lambda"):
        load_checkpoint(tmp_path / "lam.h5")
    (tmp_path / "cut.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="not a valid .keras"):
        load_checkpoint(tmp_path / "cut.keras")
    assert os.path.exists(tmp_path / "lam.keras")


def test_fp16_is_judged_by_agreement_not_logit_difference():
    """A float16 file whose logits differ by 2.6e-2 of their scale but whose masks agree passes; one whose
    masks disagree on 2% of pixels fails, whatever its logit difference."""
    from deeplab_edge.export.spec import ModelSpec
    from deeplab_edge.export.verify import Reference, Thresholds, verify_outputs

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 16, 16, 3)).astype(np.float32)
    logits[..., 0] += 2.0  # a margin so a small perturbation keeps the argmax
    spec = ModelSpec(("a", "b", "c"), (127.5,) * 3, (127.5,) * 3, "logits", 3)
    ref = Reference(np.zeros((4, 16, 16, 3), np.float32), logits, logits.argmax(-1), spec)
    scale = float(np.abs(logits).max())
    close = logits.copy()
    close[0, 0, 0, 0] += 0.026 * scale  # the largest difference, on a pixel whose class stays the same
    close[0, 0, 0, 0] = max(close[0, 0, 0, 0], close[0, 0, 0].max())
    v = verify_outputs(close, close.argmax(-1), ref, "fp16", Thresholds())
    assert v.passed and v.rel_diff > 2e-2 and "rel Δlogit" in v.figure and "agree 100.00%" in v.figure
    off = logits.argmax(-1).copy()
    off.reshape(-1)[: int(0.02 * off.size)] = (off.reshape(-1)[: int(0.02 * off.size)] + 1) % 3
    v = verify_outputs(logits, off, ref, "fp16", Thresholds())
    assert not v.passed and v.rel_diff == 0.0 and v.agreement < 0.99
    assert verify_outputs(close, close.argmax(-1), ref, "fp32", Thresholds()).passed is False  # fp32 stays strict
