"""End-to-end latency features: files that take raw pixels, logits at the decoder stride, one thread
default for both runtimes, and bench rows whose memory does not follow the eval-set size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_NORM
from PIL import Image

from deeplab_edge.runtime import load_predictor, open_backend
from deeplab_edge.runtime.backends import default_threads


@pytest.fixture(scope="module")
def pixel_stride(exported, synthetic_folder, tmp_path_factory):
    """The tiny model exported with pixel input and --logits-at stride (the two TFLite formats; ONNX files keep float inputs)."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model.data import scan_folder

    _, model, info, vx, vy = exported
    formats = ["tflite_fp32", "tflite_int8"]
    calib, _, _ = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), resolve_formats(formats),
                                               32, 16, *TINY_NORM)
    report = export_all(model, info, tmp_path_factory.mktemp("pixel_stride"), name="ps", formats=formats,
                        calibration=calib, verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        pixel_input=True, logits_at="stride")
    return report, {f.format: f.path for f in report.files}


def _photo(seed: int = 0, size: tuple[int, int] = (90, 120)) -> np.ndarray:
    from deeplab_edge.model.demo_data import synthetic_arrays

    x, _ = synthetic_arrays(1, 64, seed=seed)
    return np.asarray(Image.fromarray(x[0]).resize(size[::-1], Image.BILINEAR))


def test_pixel_input_files_take_uint8_and_verify(pixel_stride, exported):
    report, files = pixel_stride
    assert report.passed, report.table()
    assert report.model["pixel_input"] and report.model["output_size"] == [16, 16]
    for fmt, path in files.items():
        pred = load_predictor(path)
        assert pred.backend.output.shape[1:3] == (16, 16), fmt
        # TFLite files take uint8 pixels (pre-processing is a resize and a copy); ONNX files keep normalised
        # float32 inputs (onnxruntime ran the int8 file slower with the normalising first op).
        tflite = fmt.startswith("tflite")
        assert pred.takes_pixels == tflite and (pred.backend.input.dtype == np.uint8) == tflite, fmt
    assert load_predictor(files["tflite_fp32"]).meta.mean == (0.0,) * 3  # normalised inside the file
    # Full int8 with one mean/std for all channels: the uint8 input's quantisation is the normalisation.
    int8 = load_predictor(files["tflite_int8"])
    info = int8.backend.input
    assert (info.scale, info.zero_point) == (np.float32(1 / 127.5), 128) and int8.meta.mean == (128.0,) * 3
    # The float file with the normalisation inside computes what the normalised file computes.
    plain = load_predictor(next(f.path for f in exported[0].files if f.format == "tflite_fp32"))
    inside = load_predictor(files["tflite_fp32"])
    img = _photo(1, (64, 64))
    low = inside.decode(inside.run(inside.prepare([img])[0]))
    full = plain.decode(plain.run(plain.prepare([img])[0]))
    from deeplab_edge.runtime.kernels import resize_bilinear

    np.testing.assert_allclose(resize_bilinear(low, (64, 64)), full, atol=2e-3)


def test_labels_at_stride_are_the_low_resolution_argmax_resized_once(pixel_stride):
    _, files = pixel_stride
    img = _photo(2)
    for fmt in ("tflite_int8", "tflite_fp32"):
        pred = load_predictor(files[fmt])
        raw = pred.backend.run(pred.prepare([img])[0])
        scores = pred.decode(raw)[0]
        low = scores.argmax(-1).astype(np.uint8)
        expected = np.asarray(Image.fromarray(low).resize(img.shape[1::-1], Image.NEAREST))
        (mask,) = pred.predict([img])
        assert mask.shape == img.shape[:2] and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, expected)
        # "scores": bilinear scores at the input size first; smoother, mostly the same labels.
        smooth = load_predictor(files[fmt], upsample="scores").predict([img])[0]
        assert smooth.shape == mask.shape and np.mean(smooth == mask) > 0.8


def test_both_runtimes_get_the_same_default_thread_count(exported):
    files = {f.format: f.path for f in exported[0].files}
    litert, ort = open_backend(files["tflite_fp32"]), open_backend(files["onnx_fp32"])
    assert litert.num_threads == ort.num_threads == default_threads() >= 1
    assert open_backend(files["onnx_fp32"], num_threads=1).num_threads == 1


def test_bench_memory_does_not_follow_the_eval_set_and_cold_start_is_reported(pixel_stride, synthetic_folder,
                                                                               tmp_path):
    from deeplab_edge.cli import main

    _, files = pixel_stride
    rss = {}
    for n in (4, 16):
        out = tmp_path / f"b{n}"
        assert main(["bench", str(files["tflite_int8"]), "--data", str(synthetic_folder), "--eval-images", str(n),
                     "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(out), "--device", "cpu"]) == 0
        (row,) = json.loads((out / "bench.json").read_text())["rows"]
        assert row["status"] == "ok" and row["miou"] is not None
        assert row["load_ms"] > 0 and row["first_ms"] > 0 and 0 < row["base_rss_mb"] <= row["peak_rss_mb"]
        rss[n] = row["peak_rss_mb"]
    assert abs(rss[16] - rss[4]) <= 0.1 * rss[4], rss


def test_opencv_resampling_feeds_cv2_linear_and_is_refused_clearly_without_opencv(pixel_stride, monkeypatch):
    from deeplab_edge.errors import UserError
    from deeplab_edge.runtime import kernels as K

    cv2 = pytest.importorskip("cv2")
    _, files = pixel_stride
    img = _photo(3, (150, 200))
    fast = load_predictor(files["tflite_int8"], resample="opencv")
    x, sizes = fast.prepare([img])
    np.testing.assert_array_equal(x[0], cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR))
    assert sizes == [(150, 200)]
    slow = load_predictor(files["tflite_int8"])
    assert np.mean(fast.predict([img])[0] == slow.predict([img])[0]) > 0.9  # no antialiasing: close, not equal
    K.opencv.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    with pytest.raises(UserError, match=r"deeplab-edge\[opencv\]"):
        load_predictor(files["tflite_int8"], resample="opencv")
    K.opencv.cache_clear()
