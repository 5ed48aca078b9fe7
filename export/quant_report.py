"""Per-layer quantisation error of an int8 file against its float model (names as `--keep-float` takes them).

TFLite: tf.lite's QuantizationDebugger on the NumericVerify debug file (each op's int8 result beside its
float result computed from the same int8 inputs: the error that op adds). ONNX: onnxruntime's
qdq_loss_debug (each activation before and after its QuantizeLinear/DequantizeLinear pair, and against
the float model's activation: the error accumulated up to there).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from deeplab_edge.fileio import write_bytes_atomic


@dataclass(frozen=True)
class LayerError:
    """One quantised op: `sqnr_db` (signal to quantisation noise, dB; low is bad) and `cosine` of its int8
    result against float; `rmse_scale` the RMSE in quantisation steps (TFLite; ~0.29 is rounding alone);
    `accumulated_sqnr_db` against the float model's own activation and `weight_sqnr_db` of its weights
    (ONNX)."""

    name: str
    op: str
    sqnr_db: float
    cosine: float
    rmse_scale: float | None = None
    accumulated_sqnr_db: float | None = None
    weight_sqnr_db: float | None = None  # ONNX: the node's weights alone (`sqnr_db` is the lower of the two)


@dataclass(frozen=True)
class QuantReport:
    backend: str  # tflite or onnx
    what: str  # the file or model, as the user named it
    images: int
    layers: tuple[LayerError, ...]  # worst first

    def worst(self, n: int) -> tuple[LayerError, ...]:
        return self.layers[:n]

    def to_dict(self) -> dict:
        return {"backend": self.backend, "what": self.what, "images": self.images,
                "method": METHODS[self.backend], "layers": [asdict(layer) for layer in self.layers]}

    def to_markdown(self, top: int = 30) -> str:
        extra = "RMSE/scale" if self.backend == "tflite" else "SQNR vs float model (dB)"
        lines = [f"# Per-layer quantisation error: {self.what}", "",
                 f"{METHODS[self.backend]} {self.images} images; {len(self.layers)} quantised tensors, the "
                 f"{min(top, len(self.layers))} worst by SQNR (low = more error).", "",
                 f"| # | tensor | op | SQNR (dB) | cosine | {extra} |", "|---:|---|---|---:|---:|---:|"]
        for i, e in enumerate(self.layers[:top], 1):
            third = e.rmse_scale if self.backend == "tflite" else e.accumulated_sqnr_db
            lines.append(f"| {i} | `{short(e.name)}` | {e.op} | {e.sqnr_db:.1f} | {e.cosine:.4f} | "
                         f"{'' if third is None else f'{third:.2f}'} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, stem: str = "quant_report") -> list[Path]:
        """JSON, Markdown and (when matplotlib is installed) a PNG bar chart of the worst 30."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [write_bytes_atomic(out_dir / f"{stem}.json", json.dumps(self.to_dict(), indent=2).encode()),
                 write_bytes_atomic(out_dir / f"{stem}.md", self.to_markdown().encode())]
        try:
            paths.append(_plot(self, out_dir / f"{stem}.png"))
        except ImportError:
            pass
        return paths


METHODS = {"tflite": "tf.lite QuantizationDebugger (NumericVerify: each op's error from the same int8 inputs) on",
           "onnx": "onnxruntime qdq_loss_debug (activation before/after its QDQ pair, within the float model's "
                   "range; and against the float model) on"}


def short(name: str, width: int = 70) -> str:
    """A fused TFLite name ('m/a_relu/Relu;m/a_conv/Conv2D') by its first part, shortened for tables."""
    first = name.split(";")[0]
    return first if len(first) <= width else "..." + first[-(width - 3):]


SQNR_CAP = 100.0  # dB: no measurable error (also a tensor that is zero in float and in int8)


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    return _sqnr(float(np.mean(ref * ref)), float(np.mean((ref - np.asarray(test, np.float64).ravel()) ** 2)))


def channel_sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """The mean over output channels (axis 0, ONNX's weight layout) of each channel's SQNR."""
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    if ref.ndim < 2:
        return sqnr_db(ref, test)
    return float(np.mean([sqnr_db(r, t) for r, t in zip(ref, test, strict=True)]))


def _sqnr(signal_power: float, noise_power: float) -> float:
    if noise_power <= signal_power * 10 ** (-SQNR_CAP / 10):
        return SQNR_CAP
    return 10 * math.log10(max(signal_power, 1e-30) / noise_power)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else (1.0 if not a.any() and not b.any() else 0.0)


def _sorted(layers: list[LayerError]) -> tuple[LayerError, ...]:
    return tuple(sorted(layers, key=lambda e: (e.sqnr_db, e.name)))


def tflite_report(calibrated: bytes, images: np.ndarray, what: str, *, per_channel: bool = True) -> QuantReport:
    """Per-op error of the int8 file that `quantize_calibrated(calibrated)` makes, on `images` (what the
    graph takes: normalised float32, or float 0..255 pixels for a graph that normalises itself)."""
    from deeplab_edge.model._keras import tf

    from .tflite import _quiet, quantize_calibrated, tflite_layers

    def direct(fn):
        def metric(float_values, quant_values, scale, zero_point):
            return fn(float_values, (quant_values.astype(np.float64) - zero_point) * scale)
        return metric

    debug_file = quantize_calibrated(calibrated, numeric_verify=True, per_channel=per_channel)
    options = tf.lite.experimental.QuantizationDebugOptions(  # the noise comes from NumericVerify's differences
        layer_direct_compare_metrics={"signal_power": lambda f, q, s, z: float(np.mean(np.square(f, dtype=np.float64))),
                                      "cosine": direct(cosine)})
    with _quiet():
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_file, debug_options=options,
            debug_dataset=lambda: ([img[None].astype(np.float32)] for img in images))
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    # The debug file names each int8 tensor after the float one plus a digit; the dump strips it. Name
    # each row as the calibrated file does (what `--keep-float` takes).
    names = {name for name, _ in tflite_layers(calibrated)}
    interp = debugger._quant_interpreter
    layers = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        debug_name = interp._get_tensor_details(int(row["tensor_idx"]), subgraph_index=0)["name"]
        name = next((n for n in (row["tensor_name"], debug_name[:-1], debug_name) if n in names), row["tensor_name"])
        rmse = math.sqrt(float(row["mean_squared_error"]))
        sqnr = _sqnr(float(row["signal_power"]), float(row["mean_squared_error"]))
        layers.append(LayerError(name, row["op_name"], sqnr, float(row["cosine"]), rmse / scale if scale > 0 else None))
    return QuantReport("tflite", what, len(images), _sorted(layers))


FUSED_ACTIVATIONS = ("Relu", "Clip")  # onnxruntime's QDQ quantiser removes these after a quantised op


def onnx_report(float_path: Path, int8_path: Path, images: np.ndarray, what: str) -> QuantReport:
    """Per-activation error of an int8 QDQ file made from `float_path` (onnxruntime's pre-processed float
    file: the same node names), on `images` (what the files take), each named by the node that makes it."""
    import tempfile

    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )


    graph = onnx.load(str(float_path), load_external_data=False).graph
    name = graph.input[0].name
    made_by = {out: node for node in graph.node for out in node.output}
    producers = {}
    for out, node in made_by.items():
        if node.op_type in FUSED_ACTIVATIONS and node.input[0] in made_by:  # the quantiser folds it into
            node = made_by[node.input[0]]                                  # the op before: name that op
        producers[out] = (node.name or out, node.op_type)
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-qdebug-") as tmp:
        acts = {}
        for key, path in (("float", float_path), ("int8", int8_path)):
            augmented = Path(tmp) / f"{key}.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            feeds = [{name: img[None] if img.dtype == np.uint8 else img[None].astype(np.float32)} for img in images]
            acts[key] = collect_activations(str(augmented), feeds)
    matched = create_activation_matching(acts["int8"], acts["float"])
    by_node: dict[str, LayerError] = {}
    for act, m in matched.items():
        pre, post = np.concatenate([a.ravel() for a in m["pre_qdq"]]), np.concatenate([a.ravel() for a in m["post_qdq"]])
        acc = None
        if m.get("float"):
            ref = np.concatenate([a.ravel() for a in m["float"]])
            acc = sqnr_db(ref, post)
            # The quantiser drops a Relu/Clip after a Conv (the uint8 range does its work), so `pre` can hold the
            # values the activation would have cut: compare within the float model's own range.
            pre = np.clip(pre, ref.min(), ref.max())
        node, op = producers.get(act, (act, "input"))
        if op != "input":  # named by the node that makes it: what `keep_float` and nodes_to_exclude take
            by_node[node] = LayerError(node, op, sqnr_db(pre, post), cosine(pre, post), None, acc)
    # `pre` above already holds the weights' rounding; a node's own weights are judged on their own too,
    # per output channel: per-tensor scales round a depthwise kernel's small channels to zero, which the
    # whole kernel's SQNR (ruled by its large channels) and its activation's rounding both hide.
    consumers = {inp: (node.name or node.output[0], node.op_type) for node in graph.node for inp in node.input[1:]}
    for weight, m in create_weight_matching(str(float_path), str(int8_path)).items():
        if weight not in consumers:
            continue
        node, op = consumers[weight]
        w_sqnr = channel_sqnr_db(m["float"], m["dequantized"])
        old = by_node.get(node)
        if old is None:
            by_node[node] = LayerError(node, op, w_sqnr, cosine(m["float"], m["dequantized"]), None, None, w_sqnr)
        else:
            by_node[node] = replace(old, sqnr_db=min(old.sqnr_db, w_sqnr), weight_sqnr_db=w_sqnr)
    layers = list(by_node.values())
    return QuantReport("onnx", what, len(images), _sorted(layers))


def _plot(report: QuantReport, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplab_edge.fileio import atomic_path

    worst = report.worst(30)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.28 * len(worst) + 1.2)))
    ax.barh(range(len(worst)), [e.sqnr_db for e in worst], color="#c0504d")
    ax.set_yticks(range(len(worst)), [f"{short(e.name, 48)} ({e.op})" for e in worst], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR, dB (lower = more quantisation error)")
    ax.set_title(f"{report.backend}: {len(worst)} worst of {len(report.layers)} quantised tensors", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
