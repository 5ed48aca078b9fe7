"""Segmentation files nobody here exported: each output/input kind, built in the test from a tiny model
whose maths numpy repeats, run through the runtime with only the flags a user would pass."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

from deeplab_edge.errors import UserError  # noqa: E402
from deeplab_edge.runtime import load_predictor  # noqa: E402

SIZE = 32
W3 = np.array([[0.9, -0.4, 0.2], [-0.3, 0.8, -0.6], [0.1, 0.3, 0.7]], np.float32)  # (3 in, 3 classes)
W1 = np.array([[1.2], [-0.9], [0.5]], np.float32)  # (3 in, 1 channel)
B1 = np.array([0.1], np.float32)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return rm.photos()["astronaut"]


def model_input(img: np.ndarray, size: int, mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """What the runtime feeds the model: Pillow bilinear resize, then (x - mean) / std, NHWC."""
    x = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)).astype(np.float32)
    return (x - mean) / std


def at_image_size(labels: np.ndarray, img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((w, h), Image.NEAREST))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def up_bilinear(a: np.ndarray, size: int) -> np.ndarray:
    """(h, w, c) -> (size, size, c), half-pixel centres, edges clamped: written out in numpy."""
    h, w = a.shape[:2]

    def axis(n_in):
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h)
    x0, x1, wx = axis(w)
    rows = a[y0] * (1 - wy)[:, None, None] + a[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def tflite_of(model, tmp: Path, name: str, *, uint8_io: bool = False, calib=None) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if uint8_io:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([c[None]] for c in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    path = tmp / name
    path.write_bytes(conv.convert())
    return path


def conv1x1(weights: np.ndarray, bias: np.ndarray | None = None, activation=None, pool: int = 1, size: int = SIZE):
    """A tf-keras model: optional average pooling (an output stride), then a fixed 1x1 conv."""
    from deeplab_edge.model._keras import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.AveragePooling2D(pool)(inp) if pool > 1 else inp
    layer = keras.layers.Conv2D(weights.shape[1], 1, activation=activation, use_bias=bias is not None)
    out = layer(x)
    layer.set_weights([weights[None, None]] + ([bias] if bias is not None else []))
    return keras.Model(inp, out)


def test_one_channel_sigmoid_tflite(tmp_path, photo):
    path = tflite_of(conv1x1(W1, B1, "sigmoid"), tmp_path, "person.tflite")
    pred = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3)
    assert pred.meta.output == "probabilities" and pred.class_names == ("background", "foreground")
    assert any("sigmoid" in n for n in pred.notes)
    prob = sigmoid(model_input(photo, SIZE) @ W1 + B1)[..., 0]
    for t in (0.5, 0.7):
        mask = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3, threshold=t).predict([photo])[0]
        expected = at_image_size(prob >= t, photo)
        assert mask.shape == photo.shape[:2]
        assert np.mean(mask == expected) > 0.999 and 0.02 < expected.mean() < 0.98


def test_one_channel_logit_tflite(tmp_path, photo):
    path = tflite_of(conv1x1(W1, B1), tmp_path, "logit.tflite")
    logit = (model_input(photo, SIZE) @ W1 + B1)[..., 0]
    assert logit.min() < 0 and logit.max() > 1  # the values themselves say "logits"
    auto = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3)
    mask = auto.predict([photo])[0]
    assert auto.meta.output == "logits" and any("logit" in n for n in auto.notes)
    assert np.mean(mask == at_image_size(logit >= 0, photo)) > 0.999
    told = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3, output_kind="logits", threshold=0.8)
    expected = at_image_size(sigmoid(logit) >= 0.8, photo)
    assert np.mean(told.predict([photo])[0] == expected) > 0.999 and not told.notes


def test_stride4_output_is_upsampled(tmp_path, photo):
    path = tflite_of(conv1x1(W3, pool=4), tmp_path, "stride4.tflite")
    x = model_input(photo, SIZE)
    pooled = x.reshape(SIZE // 4, 4, SIZE // 4, 4, 3).mean(axis=(1, 3)) @ W3  # (8, 8, 3)
    expected = at_image_size(up_bilinear(pooled, SIZE).argmax(-1), photo)
    smooth = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3, upsample="scores").predict([photo])[0]
    assert np.mean(smooth == expected) > 0.995
    assert len(np.unique(expected)) >= 2  # the upsampled boundaries matter, not a flat mask
    # Default: the label map at the output's own 8x8 resolution, resized once (nearest) to the photo.
    mask = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3).predict([photo])[0]
    np.testing.assert_array_equal(mask, at_image_size(pooled.argmax(-1), photo))


def test_uint8_input_int8_tflite_needs_no_normalisation_flags(tmp_path, photo):
    calib = np.stack([model_input(p, SIZE, 0.0, 1.0) for p in rm.photos().values()])  # raw 0..255 pixels
    path = tflite_of(conv1x1(W3 / 64.0), tmp_path, "uint8.tflite", uint8_io=True, calib=calib)
    pred = load_predictor(path)  # no --mean/--std: the uint8 input's quantisation says it
    assert pred.backend.input.dtype == np.uint8 and pred.backend.output.dtype == np.uint8
    assert any("quantisation" in n for n in pred.notes)
    expected = at_image_size((model_input(photo, SIZE, 0.0, 1.0) @ (W3 / 64.0)).argmax(-1), photo)
    assert np.mean(pred.predict([photo])[0] == expected) > 0.97


def _onnx(path: Path, nodes, inputs, outputs, inits) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "foreign", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matting_onnx(path: Path, *, dynamic: bool = False) -> Path:
    """NCHW, one probability channel ("alpha") first, a 3-class side output ("side") second."""
    from onnx import TensorProto, helper, numpy_helper

    spatial = ["H", "W"] if dynamic else [SIZE, SIZE]
    inits = [numpy_helper.from_array(W1.T.reshape(1, 3, 1, 1).copy(), "W1"), numpy_helper.from_array(B1, "B1"),
             numpy_helper.from_array(W3.T.reshape(3, 3, 1, 1).copy(), "W3")]
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["z"]), helper.make_node("Sigmoid", ["z"], ["alpha"]),
             helper.make_node("Conv", ["image", "W3"], ["side"])]
    return _onnx(path, nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *spatial])],
                 [helper.make_tensor_value_info("alpha", TensorProto.FLOAT, [1, 1, *spatial]),
                  helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 3, *spatial])], inits)


def test_nchw_onnx_two_outputs(tmp_path, photo):
    path = matting_onnx(tmp_path / "matting.onnx")
    x = model_input(photo, SIZE, 0.0, 255.0)
    first = load_predictor(path, mean=[0] * 3, std=[255] * 3)
    assert first.meta.layout == "NCHW" and first.backend.output.name == "alpha"
    alpha = sigmoid(x @ W1 + B1)[..., 0]
    assert np.mean(first.predict([photo])[0] == at_image_size(alpha >= 0.5, photo)) > 0.999
    side = load_predictor(path, mean=[0] * 3, std=[255] * 3, output="side")
    assert side.meta.scores_layout == "NCHW" and side.class_names == ("class_0", "class_1", "class_2")
    assert np.mean(side.predict([photo])[0] == at_image_size((x @ W3).argmax(-1), photo)) > 0.999
    with pytest.raises(UserError, match=r"no output named 'sid'.*Did you mean: side.*alpha, side"):
        load_predictor(path, mean=[0] * 3, std=[255] * 3, output="sid")


def test_dynamic_size_onnx_needs_input_size(tmp_path, photo):
    path = matting_onnx(tmp_path / "dynamic.onnx", dynamic=True)
    with pytest.raises(UserError, match=r"its input size \(`input_size` H W"):
        load_predictor(path, mean=[0] * 3, std=[255] * 3)
    pred = load_predictor(path, mean=[0] * 3, std=[255] * 3, input_size=(48, 40))
    x = np.asarray(Image.fromarray(photo).resize((40, 48), Image.BILINEAR)).astype(np.float32) / 255.0
    expected = at_image_size(sigmoid(x @ W1 + B1)[..., 0] >= 0.5, photo)
    assert np.mean(pred.predict([photo])[0] == expected) > 0.999


def test_several_inputs_refused(tmp_path):
    from onnx import TensorProto, helper

    info = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, SIZE, SIZE])  # noqa: E731
    path = _onnx(tmp_path / "two_in.onnx", [helper.make_node("Add", ["a", "b"], ["y"])], [info("a"), info("b")],
                 [info("y")], [])
    with pytest.raises(UserError, match="has 2 inputs; a segmentation model takes one image input"):
        load_predictor(path, mean=[0] * 3, std=[1] * 3)


def test_standard_metadata_alone_is_enough(tmp_path, photo):
    """A file with only the standard TFLite metadata (as phone SDKs ship them): normalisation, labels and
    the activation come from it, with no flags."""
    from deeplab_edge.export.tflite import with_metadata
    from deeplab_edge.runtime.metadata import ModelMetadata
    from deeplab_edge.runtime.standard_metadata import read_standard_metadata

    plain = tflite_of(conv1x1(W1, B1), tmp_path, "plain.tflite").read_bytes()
    meta = ModelMetadata(class_names=("background", "person"), input_size=(SIZE, SIZE), mean=(0, 0, 0),
                         std=(255, 255, 255), output="logits")
    both = with_metadata(plain, meta, channels=1)
    std_meta = read_standard_metadata(both)
    assert std_meta.mean == (0.0, 0.0, 0.0) and std_meta.std == (255.0, 255.0, 255.0)
    assert std_meta.labels == ("background", "person") and std_meta.activation == "sigmoid"
    # Remove our own entry: only the standard one (and the appended labels zip) is left.
    from deeplab_edge.runtime.metadata import METADATA_KEY, write_tflite_entries
    from deeplab_edge.runtime.standard_metadata import ENTRY_NAME, attach_labels, metadata_entry

    standard_only = attach_labels(write_tflite_entries(plain, {ENTRY_NAME: metadata_entry(both, ENTRY_NAME)}),
                                  "labels.txt", ["background", "person"])
    assert metadata_entry(standard_only, METADATA_KEY) is None
    path = tmp_path / "standard_only.tflite"
    path.write_bytes(standard_only)
    pred = load_predictor(path)
    assert pred.backend.metadata is None and pred.meta.mean == (0.0, 0.0, 0.0)
    assert pred.class_names == ("background", "person") and pred.meta.output == "logits"
    logit = (model_input(photo, SIZE, 0.0, 255.0) @ W1 + B1)[..., 0]
    assert np.mean(pred.predict([photo])[0] == at_image_size(logit >= 0, photo)) > 0.999


def test_malformed_standard_metadata_is_a_clear_error(tmp_path):
    from deeplab_edge.runtime.metadata import write_tflite_entries
    from deeplab_edge.runtime.standard_metadata import ENTRY_NAME

    plain = tflite_of(conv1x1(W1, B1), tmp_path, "p.tflite").read_bytes()
    path = tmp_path / "bad.tflite"
    path.write_bytes(write_tflite_entries(plain, {ENTRY_NAME: b"\x10\x00\x00\x00M001" + b"\xff" * 8}))
    with pytest.raises(UserError, match="standard TFLite metadata.*malformed"):
        load_predictor(path, mean=[0] * 3, std=[1] * 3)


def test_resample_like_mediapipe(tmp_path, photo):
    """--resample mediapipe: input sampled at x * in / out (no half-pixel, no antialias), 3-class scores
    upsampled with aligned corners before the argmax. Checked against the same maths in float64."""
    from deeplab_edge.runtime.kernels import sample_like_mediapipe, upsample_like_mediapipe

    img = photo[:300, :451]  # odd sizes: fractional sample positions
    small = sample_like_mediapipe(img, (SIZE, SIZE))
    pos_y, pos_x = np.arange(SIZE) * 300 / SIZE, np.arange(SIZE) * 451 / SIZE
    y0, x0 = np.floor(pos_y).astype(int), np.floor(pos_x).astype(int)
    fy, fx = (pos_y - y0)[:, None, None], (pos_x - x0)[None, :, None]
    a = img.astype(np.float64)
    ref = ((a[y0][:, x0] * (1 - fx) + a[y0][:, x0 + 1] * fx) * (1 - fy)
           + (a[y0 + 1][:, x0] * (1 - fx) + a[y0 + 1][:, x0 + 1] * fx) * fy)
    assert small.dtype == np.uint8 and np.abs(small - ref).max() <= 1.5  # positions on a 1/32-pixel grid

    scores = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    up = upsample_like_mediapipe(scores, (7, 13))
    assert up.shape == (7, 13, 3)
    np.testing.assert_allclose(up[[0, 0, -1, -1]][:, [0, -1]], scores[[0, 0, -1, -1]][:, [0, -1]], rtol=1e-6)
    # Row 3 of 7 samples y = 3 * 3/6 = 1.5, column 6 of 13 samples x = 6 * 4/12 = 2.
    np.testing.assert_allclose(up[3, 6], (scores[1, 2] + scores[2, 2]) / 2, rtol=1e-5)

    path = tflite_of(conv1x1(W3), tmp_path, "three")
    pred = load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3, resample="mediapipe")
    x = (sample_like_mediapipe(img, (SIZE, SIZE)).astype(np.float32) - 127.5) / 127.5
    expected = upsample_like_mediapipe(x @ W3, img.shape[:2]).argmax(-1)
    assert np.mean(pred.predict([img])[0] == expected) > 0.999
    with pytest.raises(UserError, match="resample must be one of pillow, opencv, mediapipe; received 'cubic'"):
        load_predictor(path, mean=[127.5] * 3, std=[127.5] * 3, resample="cubic")


def test_cli_is_quiet_unless_verbose(tmp_path, photo):
    """LiteRT's "Created TensorFlow Lite XNNPACK delegate" (C++ stderr) is held back by the CLI; shown
    with --verbose. The notes and results still print."""
    import subprocess

    path = tflite_of(conv1x1(W3), tmp_path, "three.tflite")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    base = [sys.executable, "-m", "deeplab_edge", "predict", str(path), str(tmp_path / "photo.png"),
            "--mean", "127.5", "127.5", "127.5", "--std", "127.5", "127.5", "127.5"]
    quiet = subprocess.run([*base, "--out", str(tmp_path / "q")], capture_output=True, text=True, timeout=120)
    loud = subprocess.run([*base, "--out", str(tmp_path / "v"), "--verbose"], capture_output=True, text=True,
                          timeout=120)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "wrote 1 mask(s)" in quiet.stdout and "XNNPACK" not in quiet.stderr
    assert "XNNPACK" in loud.stderr
