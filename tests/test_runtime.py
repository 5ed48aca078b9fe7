"""The TF-free runtime on tiny exported files: same masks as Keras, int8, layouts, metadata, CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

from deeplab_edge.cli import main  # noqa: E402
from deeplab_edge.errors import UserError  # noqa: E402
from deeplab_edge.runtime import load_predictor, open_backend, predict_paths  # noqa: E402
from deeplab_edge.runtime.kernels import quantize, resize_nearest  # noqa: E402
from deeplab_edge.runtime.visualize import PALETTE, mask_image, overlay_image  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> rm.RuntimeModels:
    return rm.get_models(tmp_path_factory.mktemp("runtime_models"))


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return rm.photos()


def keras_logits(models: rm.RuntimeModels, x: np.ndarray) -> np.ndarray:
    return models.keras_model(x, training=False).numpy()


def decided(logits: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Pixels whose top-2 logits differ by more than `tol` (argmax is well defined there)."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) > tol


def reference_masks(models: rm.RuntimeModels, images: list[np.ndarray]) -> tuple[list, list]:
    """Keras masks at each image's size, with the decided-pixel masks, computed without the runtime."""
    h, w = models.input_size
    x = np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images])
    x = (x.astype(np.float32) - np.asarray(rm.MEAN, np.float32)) / np.asarray(rm.STD, np.float32)
    logits = keras_logits(models, x)
    labels, ok = logits.argmax(-1), decided(logits)
    up = [np.asarray(Image.fromarray(a.astype(np.uint8)).resize(im.shape[1::-1], Image.NEAREST))
          for a, im in zip(labels, images, strict=True)]
    ok_up = [np.asarray(Image.fromarray(o).resize(im.shape[1::-1], Image.NEAREST))
             for o, im in zip(ok, images, strict=True)]
    return up, ok_up


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_float_masks_equal_keras_argmax_on_photos(models, photos, kind):
    images = list(photos.values())
    predictor = load_predictor(getattr(models, kind), num_threads=2)
    masks = predictor.predict(images)
    expected, ok = reference_masks(models, images)
    for mask, exp, good, img in zip(masks, expected, ok, images, strict=True):
        assert mask.shape == img.shape[:2] and mask.dtype == np.uint8
        assert good.mean() > 0.99
        np.testing.assert_array_equal(mask[good], exp[good])
    # The model is not trivial: several classes appear.
    assert len(np.unique(np.concatenate([m.ravel() for m in masks]))) >= 3


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_run_normalised_matches_keras_logits_and_batches(models, kind):
    x = rm.normalised_photos(models.input_size)
    predictor = load_predictor(getattr(models, kind))
    batched = rm.run_normalised(predictor, x)  # 4 images at once (TFLite: resized from batch 1)
    one_by_one = np.concatenate([rm.run_normalised(predictor, x[i:i + 1]) for i in range(len(x))])
    ref = keras_logits(models, x)
    assert batched.dtype == np.float32 and batched.shape == ref.shape
    np.testing.assert_allclose(batched, ref, atol=1e-3)  # XNNPACK sums in another order
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_metadata_is_read_from_both_files(models):
    for path in (models.tflite, models.onnx):
        meta = open_backend(path).metadata
        assert meta.class_names == rm.CLASS_NAMES and meta.input_size == models.input_size
        assert meta.mean == rm.MEAN and meta.std == rm.STD
    assert open_backend(models.tflite_plain).metadata is None
    assert open_backend(models.onnx_plain).metadata is None


def test_int8_file_quantizes_input_and_agrees_with_float(models, photos):
    int8 = load_predictor(models.tflite_int8)
    info = int8.backend.input
    assert info.dtype == np.int8 and info.quantized and int8.backend.output.quantized
    x = rm.normalised_photos(models.input_size)
    q = quantize(x, info)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, np.clip(np.round(x / info.scale) + info.zero_point, -128, 127))
    np.testing.assert_array_equal(int8._to_model_input(x), q)  # what benchmarks feed backend.run
    logits = rm.run_normalised(int8, x)
    assert logits.dtype == np.float32 and logits.shape == x.shape[:3] + (rm.NUM_CLASSES,)
    # Our quantise -> int8 graph -> dequantise equals TFLite's own QUANTIZE/DEQUANTIZE ops around it.
    inside = load_predictor(models.tflite_int8_float_io)
    assert not inside.backend.input.quantized
    np.testing.assert_allclose(logits, rm.run_normalised(inside, x), atol=1e-6)
    # Statistically, not pixel for pixel: int8 logits follow the float model's.
    ref = keras_logits(models, x)
    assert np.corrcoef(logits.ravel(), ref.ravel())[0, 1] > 0.5
    masks = int8.predict(list(photos.values()))
    assert [m.shape for m in masks] == [p.shape[:2] for p in photos.values()]


def test_quantize_clips_to_the_dtype_range():
    from deeplab_edge.runtime.backends import TensorInfo

    info = TensorInfo("x", (1, 2), np.dtype(np.uint8), scale=0.5, zero_point=10)
    np.testing.assert_array_equal(quantize(np.array([[-100.0, 1.2]], np.float32), info), [[0, 12]])


def test_nchw_and_labels_models(models, photos):
    img = photos["coffee"]
    x, sizes = load_predictor(models.onnx)._normalised_batch([img])
    expected = resize_nearest(rm.hand_logits(x)[0].argmax(-1).astype(np.uint8), sizes[0])
    for path in (models.onnx_nchw, models.onnx_labels):
        predictor = load_predictor(path)
        np.testing.assert_array_equal(predictor.predict([img])[0], expected)
    nchw = load_predictor(models.onnx_nchw)
    np.testing.assert_allclose(rm.run_normalised(nchw, x), rm.hand_logits(x), atol=1e-5)
    labels = rm.run_normalised(load_predictor(models.onnx_labels), x)
    assert labels.shape == x.shape[:3] and labels.dtype.kind == "i"


def test_predict_records_stage_timings(models, photos):
    predictor = load_predictor(models.onnx, batch_size=2)
    predictor.predict(list(photos.values()))
    assert len(predictor.timings) == 2 and sum(t.images for t in predictor.timings) == 4
    summary = predictor.timing_summary()
    assert summary.images == 4 and summary.infer.mean_ms > 0 and summary.pre.p50_ms > 0
    assert "inference" in summary.to_text()


@pytest.mark.parametrize("kind", ["tflite_plain", "onnx_plain"])
def test_metadata_less_file_needs_normalisation(models, photos, kind):
    path = getattr(models, kind)
    with pytest.raises(UserError, match=r"no deeplab-edge metadata.*`mean` R G B `std` R G B"):
        load_predictor(path)
    with pytest.raises(UserError, match="`mean`"):
        load_predictor(path, input_size=models.input_size)
    plain = load_predictor(path, input_size=models.input_size, mean=rm.MEAN, std=rm.STD)
    assert plain.class_names == ("class_0", "class_1", "class_2", "class_3")
    with_meta = load_predictor(models.tflite)
    img = photos["chelsea"]
    np.testing.assert_array_equal(plain.predict([img])[0], with_meta.predict([img])[0])
    named = load_predictor(path, mean=rm.MEAN, std=rm.STD, class_names="a,b,c,d")  # size from the file
    assert named.class_names == ("a", "b", "c", "d")
    with pytest.raises(UserError, match=r"takes 64x64 inputs; received input size 32x48"):
        load_predictor(path, input_size=(32, 48), mean=rm.MEAN, std=rm.STD)


def test_class_names_must_match_the_output(models):
    with pytest.raises(UserError, match="outputs 4 classes but 2 class names"):
        load_predictor(models.onnx, class_names="a,b")
    with pytest.raises(UserError, match="must not be empty"):
        load_predictor(models.onnx, class_names="a,,b,c")


def test_threads_and_providers(models):
    with pytest.raises(UserError, match="`num_threads` must be a positive integer; received 0"):
        load_predictor(models.tflite, num_threads=0)
    with pytest.raises(UserError, match="Unknown provider 'cdua'.*cuda"):
        load_predictor(models.onnx, providers="cdua")
    with pytest.raises(UserError, match="applies to .onnx files only"):
        load_predictor(models.tflite, providers="cuda")
    import onnxruntime as ort

    p = load_predictor(models.onnx, providers="cuda,cpu", num_threads=1)
    assert p.backend.providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert p.backend.providers == ("CPUExecutionProvider",)
        assert "CUDAExecutionProvider was requested but is not available" in p.backend.notes[0]


def test_visualize_palette_and_overlay():
    from deeplab_edge.model.demo_data import PALETTE as DEMO_PALETTE

    assert PALETTE == DEMO_PALETTE
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 2
    im = mask_image(mask)
    assert im.mode == "P" and np.array_equal(np.asarray(im), mask)
    photo = np.full((40, 60, 3), 200, np.uint8)
    over = np.asarray(overlay_image(photo, mask, ["bg", "cat", "person"]))
    assert over.shape == (40, 60, 3)
    assert not np.array_equal(over[25, 45], photo[25, 45])  # blended colour inside the object
    np.testing.assert_array_equal(over[35, 55], photo[35, 55])  # background untouched (legend is top left)
    assert np.asarray(overlay_image(photo, mask, legend=False))[0, 0].tolist() == [200, 200, 200]


def write_photos(folder: Path, photos: dict[str, np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in list(photos.items())[:2]:
        paths.append(folder / f"{name}.jpg")
        Image.fromarray(img).save(paths[-1], quality=95)
    return paths


def test_predict_paths_writes_masks_and_overlays(models, photos, tmp_path):
    paths = write_photos(tmp_path / "in", photos)
    Image.fromarray(photos["coffee"]).save(tmp_path / "in" / "astronaut.png")  # same stem as astronaut.jpg
    summary = predict_paths(models.tflite, [tmp_path / "in"], tmp_path / "out", batch_size=2)
    assert summary.ok and len(summary.written) == 3
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["astronaut_jpg_mask.png", "astronaut_jpg_overlay.png", "astronaut_png_mask.png",
                     "astronaut_png_overlay.png", "chelsea_mask.png", "chelsea_overlay.png"]
    mask = np.asarray(Image.open(tmp_path / "out" / "chelsea_mask.png"))
    assert mask.shape == photos["chelsea"].shape[:2]
    expected = load_predictor(models.tflite).predict([np.asarray(Image.open(paths[1]))])[0]
    np.testing.assert_array_equal(mask, expected)
    assert summary.timing.images == 3 and "time per image" in summary.to_text()


def test_cli_predict_end_to_end(models, photos, tmp_path, capsys):
    paths = write_photos(tmp_path / "in", photos)
    out = tmp_path / "out"
    rc = main(["predict", str(models.onnx), *map(str, paths), "--out", str(out), "--threads", "1",
               "--class-names", "w,x,y,z"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_mask.png", "astronaut_overlay.png",
                                                      "chelsea_mask.png", "chelsea_overlay.png"]
    text = capsys.readouterr().out
    assert "wrote 2 mask(s)" in text and "inference" in text
    rc = main(["predict", str(models.onnx_plain), str(paths[0]), "--out", str(out)])
    assert rc == 2 and "--mean R G B" in capsys.readouterr().err
    rc = main(["predict", str(models.onnx_plain), str(paths[0]), "--out", str(tmp_path / "o2"), "--no-overlay",
               "--input-size", "64", "64", "--mean", *map(str, rm.MEAN), "--std", *map(str, rm.STD)])
    assert rc == 0 and [p.name for p in (tmp_path / "o2").iterdir()] == ["astronaut_mask.png"]


def test_argmax_channels_matches_numpy_including_ties():
    import numpy as np

    from deeplab_edge.runtime.kernels import argmax_channels

    rng = np.random.default_rng(0)
    for dtype in (np.int8, np.uint8, np.float32):
        for classes in (2, 13, 21):
            raw = rng.integers(0, 4, size=(2, 16, 16, classes)).astype(dtype)  # many ties
            np.testing.assert_array_equal(argmax_channels(raw), np.argmax(raw, axis=-1))
            nchw = np.ascontiguousarray(raw.transpose(0, 3, 1, 2))
            np.testing.assert_array_equal(argmax_channels(nchw, axis=1), np.argmax(raw, axis=-1))
