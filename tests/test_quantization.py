"""Quantisation options: 16x8 TFLite, onnxruntime's calibration methods, calibration on unlabeled images."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_NORM
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
                                               resolve_formats(["tflite_int16x8"]), 16, 4, *TINY_NORM)
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
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.verify import Thresholds

    _, model, info, vx, vy = exported
    photos = tmp_path / "photos"  # images only: no masks anywhere
    photos.mkdir()
    for i, p in enumerate(sorted((synthetic_folder / "JPEGImages").glob("*"))[:12]):
        Image.open(p).resize((80 + i, 70)).save(photos / f"p{i}.png")
    notes = []
    calib = calibration_from_folder(photos, (64, 64), None, mean=info.mean, std=info.std, note=notes.append)
    assert len(calib) == 12 and calib.pixels.shape == (12, 64, 64, 3) and "all of them" in notes[0]
    # 12 small photos calibrating a 64 px model of 58% mIoU: drops of 0.1-2.1 pt were seen between training
    # runs (threads make each run's weights differ); the point here is that images without masks calibrate.
    report = export_all(model, info, tmp_path / "out", name="u", formats=["tflite_int8", "onnx_int8"],
                        calibration=calib, verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        options=ExportOptions(calibration_method="entropy"), thresholds=Thresholds(max_miou_drop=3.0))
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
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.options import ExportOptions

    with pytest.raises(UserError, match="onnx_int8"):
        ExportOptions(calibration_method="entropy").check(resolve_formats(["tflite_int8"]))
    with pytest.raises(UserError, match="minmax, percentile, entropy"):
        ExportOptions(calibration_method="kl").check(resolve_formats(["onnx_int8"]))
    ExportOptions(calibration_method="percentile").check(resolve_formats(["onnx_int8", "tflite_int8"]))


# --- per-layer error report and layers kept in float -------------------------------------------------------

def _tiny_calibration(synthetic_folder, formats, count=16):
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.model.data import scan_folder

    calib, _, _ = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), resolve_formats(formats),
                                               count, 4, *TINY_NORM)
    return calib


def test_quant_report_ranks_every_quantised_tensor_by_name_keep_float_takes(exported, synthetic_folder, tmp_path):
    from deeplab_edge.export.keep_float import match_layers
    from deeplab_edge.export.layer_report import checkpoint_report
    from deeplab_edge.export.onnx import onnx_layers
    from deeplab_edge.export.spec import model_spec
    from deeplab_edge.export.tflite import calibrate_tflite, tflite_layers

    _, model, info, _, _ = exported
    calib = _tiny_calibration(synthetic_folder, ["tflite_int8"])
    spec = model_spec(model, info, None)
    for fmt in ("tflite_int8", "onnx_int8"):
        report = checkpoint_report(model, info, fmt, calib, spec, images=4)
        assert len(report.layers) > 20 and report.images == 4
        sqnr = [e.sqnr_db for e in report.layers]
        assert sqnr == sorted(sqnr) and all(-50 < s <= 100 for s in sqnr)  # worst first, finite
        assert all(-1.0001 <= e.cosine <= 1.0001 for e in report.layers)
        assert np.median(sqnr) > 10  # a trained tiny model quantises with most layers well above the noise
        paths = report.write(tmp_path, stem=fmt)
        assert {p.suffix for p in paths} >= {".json", ".md"}
        assert f"`{report.layers[0].name.split(';')[0]}`"[:40] in paths[1].read_text()
        if fmt == "tflite_int8":
            assert all(e.rmse_scale is not None and 0 <= e.rmse_scale < 5 for e in report.layers)
            from deeplab_edge.export.graph import export_graph

            names = [n for n, _ in tflite_layers(calibrate_tflite(export_graph(model, info), calib))]
        else:
            assert all(e.accumulated_sqnr_db is not None for e in report.layers)
            int8_file = next(f.path for f in exported[0].files if f.format == "onnx_int8")
            names = [n for n, _ in onnx_layers(int8_file)]
        # the report's names are the names --keep-float takes (tf2onnx numbers unnamed nodes anew in each
        # conversion, e.g. Resize__500: those are compared within one export only)
        assert {e.name for e in report.layers if "__" not in e.name} <= set(names)
        worst = next(e.name for e in report.layers if "__" not in e.name)
        assert match_layers([worst], [(n, "X") for n in names], fmt) == (worst,)


def test_quant_report_and_keep_float_cli(trained_tiny, synthetic_folder, tmp_path, capsys):
    from deeplab_edge.cli import main

    ckpt = str(trained_tiny[0] / "best.keras")
    rc = main(["quant-report", ckpt, "--data", str(synthetic_folder), "--out", str(tmp_path / "qr"),
               "--formats", "tflite_int8", "--calibration-images", "8", "--eval-images", "2", "--top", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "worst 3 by SQNR" in out
    assert (tmp_path / "qr" / "tflite_int8.json").exists() and (tmp_path / "qr" / "tflite_int8.md").exists()
    rc = main(["export", ckpt, "--data", str(synthetic_folder), "--out", str(tmp_path / "x"), "--formats",
               "tflite_fp32", "--keep-float", "aspp_proj"])
    assert rc == 2 and "--keep-float" in capsys.readouterr().err  # refused before work: no int8 format chosen


def test_kept_float_layers_are_float_in_both_files(exported, synthetic_folder, tmp_path):
    import onnx

    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.tflite import tflite_layers

    _, model, info, vx, vy = exported
    calib = _tiny_calibration(synthetic_folder, ["tflite_int8", "onnx_int8"])
    report = export_all(model, info, tmp_path, name="k", formats=["tflite_int8", "onnx_int8"], calibration=calib,
                        verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        options=ExportOptions(keep_float=["aspp_proj"]))
    assert all(f.verification.passed for f in report.files), report.table()
    tfl, onx = report.files
    assert tfl.fallback.kept and all("aspp_proj" in n for n in tfl.fallback.kept)
    assert tfl.fallback.kept_p50_ms > 0 and tfl.fallback.int8_p50_ms > 0
    from ai_edge_litert.interpreter import Interpreter

    details = {d["name"]: d for d in Interpreter(model_path=str(tfl.path)).get_tensor_details()}
    for name in tfl.fallback.kept:
        assert details[name]["dtype"] == np.float32  # the kept op computes in float
    others = [n for n, op in tflite_layers(tfl.path.read_bytes()) if op == "CONV_2D" and n not in tfl.fallback.kept]
    assert details[others[0]]["dtype"] == np.int8  # the rest stays int8
    assert tfl.ops.get("DEQUANTIZE", 0) >= 2  # float islands inside the int8 graph
    graph = onnx.load(str(onx.path)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    kept = [n for n in graph.node if n.name in onx.fallback.kept]
    assert kept and all("aspp_proj" in n.name for n in kept)
    for node in kept:
        weight = node.input[1] if len(node.input) > 1 else None
        if node.op_type == "Conv" and weight:  # a float Conv: its weight is no DequantizeLinear output
            assert weight not in made_by or made_by[weight].op_type != "DequantizeLinear"
    convs = [n for n in graph.node if n.op_type == "Conv" and n.name not in onx.fallback.kept]
    assert made_by[convs[0].input[1]].op_type == "DequantizeLinear"  # the others are still int8 QDQ
    with pytest.raises(UserError, match="matches no layer.*Did you mean"):
        export_all(model, info, tmp_path / "bad", name="k", formats=["tflite_int8"], calibration=calib,
                   verify_images=vx, verify_masks=vy, progress=lambda m: None, options=ExportOptions(keep_float=["aspp_prj"]))


def test_auto_keep_float_stops_as_soon_as_the_budget_holds():
    from deeplab_edge.export.keep_float import search
    from deeplab_edge.export.verify import Verification

    drops = {0: 3.0, 1: 2.0, 2: 0.4, 3: 0.1}  # mIoU drop after keeping n layers in float
    calls = []

    def evaluate(kept):
        calls.append(kept)
        d = drops[len(kept)]
        return Verification(True, 4, None, None, 0.99, 0.5, 0.5 + d / 100, d, "", "")

    fb, result = search(["c", "a", "b", "d"], ("a",), evaluate, max_drop=0.5, progress=lambda m: None)
    assert fb.kept == ("a", "c") and fb.met and result.miou_drop == 0.4
    assert calls == [("a",), ("a", "c")]  # the start, then the worst first, stopped at once
    assert [s.added for s in fb.steps] == ["", "c"]
    fb, _ = search(["c", "a", "b", "d"], (), evaluate, max_drop=0.2, progress=lambda m: None)
    assert fb.kept == ("c", "a", "b") and fb.met and [s.miou_drop for s in fb.steps] == [3.0, 2.0, 0.4, 0.1]
    fb, _ = search(["c", "a", "b", "d"], (), evaluate, max_drop=0.05, max_layers=2, progress=lambda m: None)
    assert fb.kept == ("c", "a") and not fb.met  # the cap stops it, and says the budget was not met


def test_auto_keep_float_on_real_files(exported, synthetic_folder, tmp_path):
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.export.verify import Thresholds

    _, model, info, vx, vy = exported
    calib = _tiny_calibration(synthetic_folder, ["tflite_int8"])
    notes = []
    hard = export_all(model, info, tmp_path / "hard", name="a", formats=["tflite_int8"], calibration=calib,
                      verify_images=vx, verify_masks=vy, progress=notes.append,
                      thresholds=Thresholds(max_miou_drop=-50.0),  # unreachable: runs to the cap
                      options=ExportOptions(auto_keep_float=True, max_keep_float=2))
    (f,) = hard.files
    assert len(f.fallback.kept) == 2 and not f.fallback.met and not f.verification.passed
    assert [s.kept for s in f.fallback.steps] == [0, 1, 2]
    assert any("keep-float step 2" in n for n in notes)
    import json

    entry = json.loads(hard.manifest.read_text())["files"][0]["keep_float"]
    assert entry["kept_float"] == list(f.fallback.kept) and entry["met"] is False
    assert entry["speed"]["kept_float_for_speed"] == []  # the cap was spent on accuracy: no speed trial
    assert any(n.startswith("speed: ") for n in notes)  # the file's real per-op profiles were read


def test_latency_objective_keeps_exactly_the_layers_a_profile_makes_slow(exported, synthetic_folder):
    """The tiny model's real tflite_int8 layers with a synthetic per-op profile in which two depthwise
    convolutions run 3x slower in int8 than in float (every other op faster in int8): the search keeps those
    two in float, and not a third whose float island would cost more than it saves, nor one over budget."""
    from deeplab_edge.export.graph import export_graph
    from deeplab_edge.export.keep_float_speed import slower_in_int8, speed_search
    from deeplab_edge.export.tflite import calibrate_tflite, tflite_layers
    from deeplab_edge.export.verify import Verification

    _, model, info, _, _ = exported
    layers = tflite_layers(calibrate_tflite(export_graph(model, info), _tiny_calibration(synthetic_folder,
                                                                                         ["tflite_int8"], 4)))
    dw = [n for n, op in layers if op == "DEPTHWISE_CONV_2D"]
    assert len(dw) >= 4
    slow, island, harmful = dw[:2], dw[2], dw[3]
    int8 = {n: (op, 0.10) for n, op in layers}
    flt = {n: 0.20 for n, _ in layers}
    for n in slow:
        int8[n], flt[n] = ("DEPTHWISE_CONV_2D", 0.60), 0.10
    int8[island], flt[island] = ("DEPTHWISE_CONV_2D", 0.12), 0.11  # slower alone, but requantising costs more
    int8[harmful], flt[harmful] = ("DEPTHWISE_CONV_2D", 0.80), 0.10  # fast in float, but breaks the budget
    candidates = slower_in_int8(int8, flt, [n for n, _ in layers])
    assert [c.name for c in candidates] == [harmful, *slow, island]  # the largest loss first

    def time_file(kept):  # the whole file: each op at its precision, plus 0.03 ms per float island
        return sum(flt[n] + 0.03 if n in kept else int8[n][1] for n, _ in layers)

    def compare(kept, base):  # paired timing, here exact: ratio and a +-1% interval
        r = time_file(kept) / time_file(base)
        return r, r - 0.01, r + 0.01

    def evaluate(kept):
        drop = 5.0 if harmful in kept else 0.1 * len(kept)
        return Verification(drop <= 2, 4, None, None, 0.99, 0.5, 0.5, drop, "", "")

    choice = speed_search(candidates, (), evaluate, compare, 2.0, max_layers=20, progress=lambda m: None)
    assert set(choice.kept) == set(slow)
    assert choice.precision() == {harmful: "int8", slow[0]: "float", slow[1]: "float", island: "int8"}
    assert choice.gain == pytest.approx(time_file(()) / time_file(tuple(slow)))
    assert [t.accepted for t in choice.trials] == [False, False, True, True, False]  # all at once, then each


@pytest.mark.slow  # ~60 s (tfmot builds and traces the fake-quant graph); run with `make test-slow`
def test_qat_fine_tunes_and_exports_an_all_integer_file(trained_tiny, synthetic_folder, tmp_path, capsys):
    import json

    from deeplab_edge.cli import main
    from deeplab_edge.export.tflite import tflite_layers
    from deeplab_edge.model.checkpoint import load_checkpoint

    run_dir, _ = trained_tiny
    rc = main(["train", "--qat-from", str(run_dir / "best.keras"), "--data", str(synthetic_folder), "--out",
               str(tmp_path / "qat"), "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    best = tmp_path / "qat" / "best_qat.h5"
    result = json.loads((tmp_path / "qat" / "qat_result.json").read_text())
    assert best.exists() and len(result["val_miou"]) == 1
    model, info = load_checkpoint(best)
    assert info.extra["qat"]["from"].endswith("best.keras")
    assert any("quantize" in layer.name for layer in model.layers)  # fake quantisation inside
    float_model, _ = load_checkpoint(run_dir / "best.keras")
    assert not np.array_equal(model.get_weights()[1], float_model.get_weights()[0])  # fine-tuned, not a copy
    out = tmp_path / "exp"
    rc = main(["export", str(best), "--data", str(synthetic_folder), "--out", str(out), "--eval-images", "16"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    (f,) = json.loads((out / "manifest.json").read_text())["files"]
    assert f["format"] == "tflite_int8" and f["verification"]["passed"]
    from ai_edge_litert.interpreter import Interpreter

    path = out / f["file"]
    details = {d["name"]: d["dtype"] for d in Interpreter(model_path=str(path)).get_tensor_details()}
    computed = [n for n, op in tflite_layers(path.read_bytes()) if op not in ("QUANTIZE", "DEQUANTIZE")]
    assert computed and all(details[n] == np.int8 for n in computed)  # every op computes in int8
    assert main(["export", str(best), "--data", str(synthetic_folder), "--out", str(tmp_path / "x"),
                 "--formats", "onnx_fp32"]) == 2
    assert "tflite_int8 only" in capsys.readouterr().err


def test_batchnorm_folds_exactly_into_the_conv_before_it():
    from deeplab_edge.model._keras import keras
    from deeplab_edge.model.deeplab import build_deeplabv3plus, rebuild
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.qat_graph import fold_batchnorm

    cfg = get_preset("tiny").config.replace(num_classes=3)
    model = build_deeplabv3plus(cfg)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics far from the initial ones, as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 1, c), rng.uniform(0.1, 3, c)])
    graph = rebuild(model, cfg, fold_atrous=True, native_dilation=False)
    folded = fold_batchnorm(graph)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in graph.layers) > 20
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    want, got = graph.predict(x, verbose=0), folded.predict(x, verbose=0)
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())
