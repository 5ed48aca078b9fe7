"""ONNX export: float32 with tf2onnx (dynamic batch), and int8 QDQ with onnxruntime's static quantizer."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import atomic_path
from deeplab_edge.model._keras import tf
from deeplab_edge.runtime.metadata import METADATA_KEY, ModelMetadata

from .calibration import Calibration
from .options import ONNX_OPSET


def _set_metadata(proto, metadata: ModelMetadata) -> None:
    keep = [p for p in proto.metadata_props if p.key not in (METADATA_KEY, "class_names", "input_size")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in ((METADATA_KEY, metadata.to_json()), ("class_names", ",".join(metadata.class_names)),
                       ("input_size", "x".join(map(str, metadata.input_size)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _save(proto, out: Path) -> Path:
    import onnx

    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return Path(out)


def export_onnx(model, out: Path, *, metadata: ModelMetadata, opset: int = ONNX_OPSET) -> Path:
    """Keras -> ONNX float32 via tf2onnx, input `image` NHWC with a dynamic batch dimension."""
    import tf2onnx

    h, w = model.input_shape[1:3]
    spec = (tf.TensorSpec((None, h, w, 3), model.inputs[0].dtype, name="image"),)  # uint8 for pixel input
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as e:
        raise UserError(f"ONNX conversion (tf2onnx, opset {opset}) failed: {str(e).splitlines()[0][:500]}") from None
    proto.producer_name = "deeplab-edge (tf2onnx)"
    _set_metadata(proto, metadata)
    return _save(proto, out)


ACTIVATION_TYPES = ("uint8", "int8")


def preprocess_for_quantization(fp32_path: Path, out: Path) -> Path:
    """onnxruntime's pre-processing step (shape inference, graph optimisation): the graph whose node names
    `nodes_to_exclude` and the per-layer report use."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # Symbolic shape inference fails on tf2onnx graphs ("Incomplete symbolic shape inference");
        # ONNX shape inference and the graph optimisation still run.
        with _quiet_quantizer():
            quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=True)
    except Exception as e:
        raise UserError(f"ONNX int8 pre-processing failed: {str(e).splitlines()[0][:500]}") from None
    return Path(out)


def onnx_layers(path: Path) -> list[tuple[str, str]]:
    """(node name, op type) of each node: the names `nodes_to_exclude` takes."""
    import onnx

    return [(n.name, n.op_type) for n in onnx.load(str(path), load_external_data=False).graph.node if n.name]


def export_onnx_int8(fp32_path: Path, out: Path, *, metadata: ModelMetadata, calibration: Calibration,
                     per_channel: bool = True, activation_type: str = "uint8", reduce_range: bool = False,
                     method: str = "minmax", nodes_to_exclude: tuple[str, ...] = (), quant_format: str = "qdq",
                     symmetric_activations: bool = False) -> Path:
    """Static quantisation (int8 per-channel weights) after onnxruntime's pre-processing step.

    `method`: onnxruntime's calibrator, minmax (default), percentile (99.999th by default) or entropy.
    `quant_format`: "qdq" (QuantizeLinear/DequantizeLinear around float ops, fused by onnxruntime) or
    "qoperator" (QLinearConv and friends). `reduce_range`: 7-bit weights, which `export.targets` sets for
    x86 CPUs without VNNI.

    Activations default to uint8 (U8S8), the combination onnxruntime's x86 kernels run fastest: with
    int8 activations the depthwise convs stayed float and the file ran slower than float32 here
    (4.19 vs 3.75 ms p50; U8S8: 2.68 ms; edge preset, 2 threads, AVX-512 VNNI CPU).

    7-bit weights matter on x86 without VNNI (AVX2 only), where onnxruntime's U8S8 kernels add products
    pairwise in int16 and saturate with full 8-bit weights. Measured on the tiny test model, AMD EPYC
    AVX2-only: agreement with Keras 96.04% (mIoU -3.1 pt) with 8-bit weights, 98.89% (-0.4 pt) with 7-bit.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-q-") as tmpdir:
        pre = preprocess_for_quantization(fp32_path, Path(tmpdir) / "pre.onnx")
        q = Path(tmpdir) / "q.onnx"
        try:
            with _quiet_quantizer():
                quantize_static(
                    str(pre), str(q), calibration.ort_reader(input_name),
                    quant_format=QuantFormat.QOperator if quant_format == "qoperator" else QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, reduce_range=reduce_range,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                      "entropy": CalibrationMethod.Entropy}[method],
                    nodes_to_exclude=list(nodes_to_exclude) or None,
                    extra_options={"ActivationSymmetric": bool(symmetric_activations)},
                )
        except Exception as e:
            raise UserError(f"ONNX int8 quantisation failed: {str(e).splitlines()[0][:500]}") from None
        proto = onnx.load(str(q))
    _set_metadata(proto, metadata)
    return _save(proto, out)


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantiser logs its progress through the root logger, and its histogram calibrators
    print it: errors only while it runs, then the caller's level back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def onnx_op_histogram(path: Path) -> dict[str, int]:
    import onnx

    hist: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def onnx_initializer_types(path: Path) -> dict[str, int]:
    import onnx

    out: dict[str, int] = {}
    for init in onnx.load(str(path), load_external_data=False).graph.initializer:
        name = onnx.TensorProto.DataType.Name(init.data_type)
        out[name] = out.get(name, 0) + 1
    return out


os.environ.setdefault("TF2ONNX_SKIP_OPSET_WARNING", "1")


def onnx_int8_writer(fp32: Path, meta: ModelMetadata, calibration: Calibration, settings: dict):
    """`write(out, kept=())`: the onnx_int8 file of `fp32` with `settings` (`targets.onnx_int8_settings`),
    `kept` nodes left float."""

    def write(out: Path, kept: tuple[str, ...] = ()) -> Path:
        return export_onnx_int8(
            fp32, out, metadata=meta, calibration=calibration, per_channel=settings["per_channel"],
            method=settings["calibration_method"], nodes_to_exclude=kept, activation_type=settings["activation_type"],
            reduce_range=settings["reduce_range"], quant_format=settings["quant_format"],
            symmetric_activations=settings["symmetric_activations"])

    return write
