"""TFLite export: float32, float16, dynamic-range, and full-integer int8 (every op int8)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import write_bytes_atomic
from deeplab_edge.model._keras import tf
from deeplab_edge.runtime.metadata import METADATA_KEY, ModelMetadata, write_tflite_entries
from deeplab_edge.runtime.standard_metadata import ENTRY_NAME, attach_labels, build_standard_metadata

from .calibration import Calibration

LABELS_FILE = "labels.txt"
IO_TYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}


@contextlib.contextmanager
def _quiet():
    """The converter and the quantiser print MLIR chatter on both file descriptors (the quantiser its
    settings from C++ to fd 1); keep it off the user's terminal."""
    import sys

    sys.stdout.flush()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
        saved = [os.dup(1), os.dup(2)]
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            for fd, old in zip((1, 2), saved, strict=True):
                os.dup2(old, fd)
                os.close(old)


def convert_tflite(model, mode: str, *, calibration: Calibration | None = None, io_type: str = "float32",
                   pixel_quant: tuple[float, float] | None = None, per_channel: bool = True) -> bytes:
    """Convert a Keras model; `mode` is one of fp32, fp16, dynamic, int8.

    `pixel_quant` (int8): (mean, std) that the file's 8-bit input realises on raw pixels. The input becomes
    uint8 (int8 under `io_type` int8) with scale 1 / std and zero point round(mean) (minus 128 for int8),
    so raw pixels go in as they are. (0, 1) for a graph that normalises 0..255 inputs itself."""
    from deeplab_edge.model.layers import native_dilation_ops

    input_type = io_type if pixel_quant is None or io_type in ("int8", "uint8") else "uint8"
    with native_dilation_ops():
        data = _convert(model, mode, calibration, io_type, input_type=input_type, per_channel=per_channel)
    return set_input_quantization(data, *pixel_quant) if pixel_quant is not None and mode == "int8" else data


def calibrate_tflite(model, calibration: Calibration) -> bytes:
    """The float file with every tensor's calibrated range recorded (the converter's calibrate-only step),
    to quantise with `quantize_calibrated` as often as wanted without running the images again."""
    from deeplab_edge.model.layers import native_dilation_ops

    converter = keras_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration.representative_dataset
    converter._experimental_calibrate_only = True  # the documented route of tf.lite's QuantizationDebugger
    with native_dilation_ops():
        return _run(converter, "int8 calibration")


def quantize_calibrated(calibrated: bytes, *, io_type: str = "float32", pixel_quant: tuple[float, float] | None = None,
                        keep_float: tuple[str, ...] = (), numeric_verify: bool = False, per_channel: bool = True) -> bytes:
    """Full-integer int8 from `calibrate_tflite`'s output, but for the ops whose output tensors are named in
    `keep_float` (see `tflite_layers`), which stay float32 between a DEQUANTIZE and a QUANTIZE.
    `numeric_verify`: the debug file of tf.lite's QuantizationDebugger (float and int8 side by side)."""
    from tensorflow.lite.python import convert

    if io_type not in IO_TYPES:
        raise UserError(f"io_type must be one of {sorted(IO_TYPES)}; received {io_type!r}.")
    input_type = "float32" if numeric_verify else (
        io_type if pixel_quant is None or io_type in ("int8", "uint8") else "uint8")
    with _quiet():
        data = convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, input_data_type=IO_TYPES[input_type],
                                     output_data_type=IO_TYPES["float32" if numeric_verify else io_type],
                                     enable_numeric_verify=numeric_verify, denylisted_nodes=list(keep_float) or None)
    return set_input_quantization(data, *pixel_quant) if pixel_quant is not None and not numeric_verify else data


def tflite_layers(data: bytes) -> list[tuple[str, str]]:
    """(output tensor name, op type) of each op of a TFLite file's main graph, in graph order: the names
    `quantize_calibrated(keep_float=...)` takes. The converter names a fused op after every layer it
    fused (e.g. 'model/aspp_proj_relu/Relu;model/aspp_proj_conv/Conv2D')."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    sg = model.subgraphs[0]
    return [(sg.tensors[op.outputs[0]].name.decode(), flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
            for op in sg.operators if len(op.outputs)]


def set_input_quantization(data: bytes, mean: float, std: float) -> bytes:
    """Make a full-integer file's 8-bit input realise (pixel - round(mean)) / std on raw pixels: scale
    1 / std, zero point round(mean) for uint8, round(mean) - 128 for int8 (pixel - 128).

    The converter derives the input's quantisation from the calibration images' range (e.g. 3..252 gives
    scale 0.98); the QUANTIZE op after a uint8 input requantises from whatever the input says, and an
    int8 input is read with its own parameters, so the exact values cost nothing."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    sg = model.subgraphs[0]
    tensor = sg.tensors[sg.inputs[0]]
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise UserError("The int8 converter left the input unquantised; export with `pixel_input=False` and "
                        "report this.")
    shift = -128 if tensor.type == schema.TensorType.INT8 else 0
    q.scale, q.zeroPoint = [1.0 / float(std)], [int(round(float(mean))) + shift]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def keras_converter(model) -> tf.lite.TFLiteConverter:
    """A TFLite converter for a Keras model's inference graph, 4-5x faster than `from_keras_model`.

    `from_keras_model` saves the Keras model as a SavedModel first, and tf-keras' serialisation traces
    every layer's call functions (~20 s for the tiny preset at 128 px, all but 4 s of the conversion).
    Here only the inference function and the variables it reads are saved: the same ops, the same
    outputs (checked bit-exact on the tiny preset), the same input name and shape.
    """
    from deeplab_edge.model.foreign import source_of

    holder = tf.Module()
    holder.model_variables = list(model.variables)
    holder.serve = tf.function(lambda x: model(x, training=False))
    name = (getattr(model, "input_names", None) or ["image"])[0]
    # A model built elsewhere converts at batch 1: graphs that reshape by tf.shape (keras-hub's ASPP pooling)
    # otherwise keep SHAPE/RESHAPE ops whose outputs are dynamic at run time, and XNNPACK and the GPU
    # accelerator leave everything after them undelegated (keras-hub DeepLabV3 ResNet50 at 256 px: 94 ms
    # fp32 with a dynamic batch, the GPU accelerator refusing it).
    batch = 1 if source_of(model) is not None else None
    spec = tf.TensorSpec((batch, *model.input_shape[1:]), model.inputs[0].dtype, name=name)
    return tf.lite.TFLiteConverter.from_concrete_functions([holder.serve.get_concrete_function(spec)], holder)


def _convert(model, mode: str, calibration: Calibration | None, io_type: str, input_type: str,
             per_channel: bool = True) -> bytes:
    converter = keras_converter(model)
    converter._experimental_disable_per_channel = not per_channel
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int16x8":
        if calibration is None:
            raise UserError("16x8 export needs calibration images; none were given.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration.representative_dataset
        # Only the 16x8 op set: an op without a 16x8 kernel fails the conversion here, naming the op,
        # instead of falling back to float silently or failing at the first run.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode == "int8":
        if calibration is None:
            raise UserError("Full-integer int8 export needs calibration images; none were given.")
        if io_type not in IO_TYPES:
            raise UserError(f"io_type must be one of {sorted(IO_TYPES)}; received {io_type!r}.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration.representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = IO_TYPES[input_type]
        converter.inference_output_type = IO_TYPES[io_type]
    elif mode != "fp32":
        raise ValueError(f"unknown TFLite mode {mode!r}")
    return _run(converter, mode)


def _run(converter, mode: str) -> bytes:
    try:
        with _quiet():
            return converter.convert()
    except Exception as e:  # the converter raises many types; name the step and keep the message
        text = str(e)
        lines = [ln.strip() for ln in text.splitlines() if "not supported" in ln or "unsupported" in ln.lower()]
        detail = "; ".join(dict.fromkeys(lines))[:500] or (text.splitlines() or [type(e).__name__])[0][:500]
        hint = (" These ops have no 16x8 kernel in TFLite: export tflite_int8 or a float format instead."
                if mode == "int16x8" and lines else "")
        raise UserError(f"TFLite {mode} conversion failed: {detail}.{hint}") from None


def export_tflite(model, out: Path, *, metadata: ModelMetadata, mode: str,
                  calibration: Calibration | None = None, io_type: str = "float32",
                  pixel_quant: tuple[float, float] | None = None, per_channel: bool = True) -> Path:
    data = convert_tflite(model, mode, calibration=calibration, io_type=io_type, pixel_quant=pixel_quant,
                          per_channel=per_channel)
    return write_tflite(data, out, metadata=metadata, channels=int(model.output_shape[-1]))


def write_tflite(data: bytes, out: Path, *, metadata: ModelMetadata, channels: int) -> Path:
    return write_bytes_atomic(out, with_metadata(data, metadata, channels=channels))


def with_metadata(data: bytes, meta: ModelMetadata, *, channels: int) -> bytes:
    """The file with our metadata entry, plus, for score outputs, the standard TFLite metadata that phone
    clients read (normalisation, labels file, the segmenter's activation) and the labels file itself."""
    if meta.output == "labels":
        return write_tflite_entries(data, {METADATA_KEY: meta.to_json().encode()})
    one_channel = channels == 1
    activation = {"logits": "sigmoid" if one_channel else "softmax", "probabilities": "none"}[meta.output]
    standard = build_standard_metadata(
        name=f"deeplab-edge {meta.preset or 'segmenter'} ({meta.variant})".replace(" ()", ""),
        description=f"Semantic segmentation, {len(meta.class_names)} classes, {meta.input_size[0]}x{meta.input_size[1]} "
                    "RGB input.", mean=meta.mean, std=meta.std, class_names=meta.class_names,
        activation=activation, labels_file=LABELS_FILE, version=meta.version)
    data = write_tflite_entries(data, {METADATA_KEY: meta.to_json().encode(), ENTRY_NAME: standard})
    return attach_labels(data, LABELS_FILE, meta.class_names)


def op_histogram(path_or_bytes) -> dict[str, int]:
    """Count of each builtin op in a TFLite file's subgraphs (TF-free flatbuffer read)."""
    from ai_edge_litert.tools import flatbuffer_utils

    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else path_or_bytes
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    hist: dict[str, int] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def tensor_types(path: Path) -> dict[str, int]:
    """Count of tensor element types in a TFLite file (e.g. {'INT8': 120, 'INT32': 40})."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    out: dict[str, int] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            out[names.get(t.type, str(t.type))] = out.get(names.get(t.type, str(t.type)), 0) + 1
    return out


def tflite_cost(path: Path):
    """Multiply-accumulates at batch 1 of a float TFLite file's CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV and
    FULLY_CONNECTED ops (`flops.ModelCost`; params 0): for models whose Keras layers are not at hand."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    from deeplab_edge.model.flops import ModelCost

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    by_type: dict[str, int] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)

            def shape(i: int, sg=sg) -> list[int]:
                return [max(1, int(d)) for d in sg.tensors[i].shape]

            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                out, w = shape(op.outputs[0]), shape(op.inputs[1])
                per_output = int(np.prod(w[1:])) if name != "DEPTHWISE_CONV_2D" else int(np.prod(w[1:3]))
                macs = int(np.prod(out)) * per_output
            elif name == "TRANSPOSE_CONV":
                w, x = shape(op.inputs[1]), shape(op.inputs[2])
                macs = int(np.prod(x)) * int(np.prod(w[:3]))
            else:
                continue
            key = {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "FULLY_CONNECTED": "Dense",
                   "TRANSPOSE_CONV": "Conv2DTranspose"}[name]
            by_type[key] = by_type.get(key, 0) + macs
    return ModelCost(params=0, macs=sum(by_type.values()), macs_by_type=by_type)
