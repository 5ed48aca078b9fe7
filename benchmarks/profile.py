"""Where the time goes: per op type and per layer, for a .tflite (LiteRT) or .onnx (onnxruntime) file.

TFLite: the Python interpreter exposes no op profiler, so each operator is cut out of the
flatbuffer into a one-op model (its constant inputs kept, its other inputs fed random data of the
right type and quantisation) and timed alone with the same interpreter, threads and XNNPACK.
Fusion across ops and partition boundaries is lost, so the per-op sum differs from the whole-model
time; both are reported.
ONNX: onnxruntime's own profiler (`SessionOptions.enable_profiling`), node events aggregated.
MACs per op are computed from tensor shapes (conv, depthwise conv, fully connected / matmul).
TF-free.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab_edge.runtime.files import check_model_file
from deeplab_edge.runtime.stages import latency_stats

from .timing import time_callable


@dataclass(frozen=True)
class OpTime:
    name: str  # layer / node name
    op_type: str
    ms: float  # p50 per run
    macs: int
    dtype: str  # type of the op's first input (INT8, FLOAT32, ...)


@dataclass(frozen=True)
class Profile:
    file: str
    backend: str
    threads: int
    whole_model_ms: float
    ops: tuple[OpTime, ...]
    method: str

    @property
    def ops_total_ms(self) -> float:
        return float(sum(o.ms for o in self.ops))

    def by_type(self) -> list[dict]:
        agg: dict[tuple[str, str], dict] = {}
        for o in self.ops:
            a = agg.setdefault((o.op_type, o.dtype), {"op_type": o.op_type, "dtype": o.dtype, "count": 0, "ms": 0.0,
                                                       "macs": 0})
            a["count"] += 1
            a["ms"] += o.ms
            a["macs"] += o.macs
        total = self.ops_total_ms or 1.0
        rows = sorted(agg.values(), key=lambda a: -a["ms"])
        for a in rows:
            a["percent"] = 100 * a["ms"] / total
            a["gmacs_per_s"] = (a["macs"] / 1e9) / (a["ms"] / 1e3) if a["ms"] and a["macs"] else None
        return rows

    def to_dict(self) -> dict:
        return {"file": self.file, "backend": self.backend, "threads": self.threads, "method": self.method,
                "whole_model_ms": self.whole_model_ms, "ops_total_ms": self.ops_total_ms,
                "by_type": self.by_type(), "ops": [o.__dict__ for o in self.ops]}

    def table(self, top: int = 15) -> str:
        lines = [f"{self.file} on {self.backend}, {self.threads} thread(s): whole model p50 {self.whole_model_ms:.2f} ms, "
                 f"sum of ops {self.ops_total_ms:.2f} ms", f"({self.method})", "",
                 f"{'op type':<26} {'dtype':<8} {'count':>5} {'ms':>8} {'%':>6} {'MMACs':>9} {'GMAC/s':>7}"]
        for a in self.by_type():
            rate = f"{a['gmacs_per_s']:.1f}" if a["gmacs_per_s"] else ""
            lines.append(f"{a['op_type']:<26} {a['dtype']:<8} {a['count']:>5} {a['ms']:>8.3f} {a['percent']:>5.1f}% "
                         f"{a['macs'] / 1e6:>9.1f} {rate:>7}")
        lines += ["", f"top {top} layers:", f"{'layer':<48} {'op type':<22} {'ms':>8} {'%':>6} {'MMACs':>9}"]
        total = self.ops_total_ms or 1.0
        for o in sorted(self.ops, key=lambda o: -o.ms)[:top]:
            lines.append(f"{o.name[-48:]:<48} {o.op_type:<22} {o.ms:>8.3f} {100 * o.ms / total:>5.1f}% "
                         f"{o.macs / 1e6:>9.1f}")
        return "\n".join(lines)

    def markdown(self, top: int = 10) -> str:
        lines = [f"Whole model p50 {self.whole_model_ms:.2f} ms; sum of per-op times {self.ops_total_ms:.2f} ms "
                 f"({self.backend}, {self.threads} threads).", "",
                 "| op type | dtype | count | ms | % | MMACs | GMAC/s |", "|---|---|---|---|---|---|---|"]
        for a in self.by_type():
            rate = f"{a['gmacs_per_s']:.1f}" if a["gmacs_per_s"] else ""
            lines.append(f"| {a['op_type']} | {a['dtype']} | {a['count']} | {a['ms']:.3f} | {a['percent']:.1f} | "
                         f"{a['macs'] / 1e6:.1f} | {rate} |")
        return "\n".join(lines)


# ---------------------------------------------------------------- TFLite


def _tflite_macs(op_type: str, tensors, op) -> int:
    def shape(i):
        return list(tensors[i].shape) if i >= 0 and tensors[i].shape is not None else []

    try:
        if op_type == "CONV_2D":
            out, w = shape(op.outputs[0]), shape(op.inputs[1])  # w: [Cout, kh, kw, Cin]
            return int(np.prod(out[:-1]) * out[-1] * w[1] * w[2] * w[3])
        if op_type == "DEPTHWISE_CONV_2D":
            out, w = shape(op.outputs[0]), shape(op.inputs[1])  # w: [1, kh, kw, C]
            return int(np.prod(out) * w[1] * w[2])
        if op_type == "FULLY_CONNECTED":
            out, w = shape(op.outputs[0]), shape(op.inputs[1])
            return int(np.prod(out) * w[-1])
    except (IndexError, TypeError):
        return 0
    return 0


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype = detail["dtype"]
    shape = detail["shape"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
    return rng.normal(0, 1, size=shape).astype(dtype)


def _interpreter(content: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=threads)
    it.allocate_tensors()
    return it


def _time_interpreter(it, rng, loop: dict) -> float:
    for d in it.get_input_details():
        it.set_tensor(d["index"], _random_input(d, rng))
    return latency_stats(time_callable(it.invoke, **loop)).p50_ms


def profile_tflite(path: Path, *, threads: int = 2, warmup: int = 3, min_runs: int = 20,
                   min_time_s: float = 0.2, whole_min_time_s: float = 1.0) -> Profile:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    data = Path(path).read_bytes()
    model = fu.convert_bytearray_to_object(bytearray(data))
    sg = model.subgraphs[0]
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    rng = np.random.default_rng(0)
    whole = _time_interpreter(_interpreter(data, threads), rng,
                              dict(warmup=warmup, min_runs=min_runs, min_time_s=max(min_time_s, whole_min_time_s)))
    loop = dict(warmup=warmup, min_runs=min_runs, min_time_s=min_time_s)
    all_ops, all_tensors = list(sg.operators), list(sg.tensors)
    sg_inputs, sg_outputs = list(sg.inputs), list(sg.outputs)
    ops: list[OpTime] = []
    for op in all_ops:
        op_type = fu.opcode_to_name(model, op.opcodeIndex)
        const = {i for i in op.inputs if i >= 0 and model.buffers[all_tensors[i].buffer].data is not None
                 and len(model.buffers[all_tensors[i].buffer].data) > 0}
        sg.operators = [op]
        sg.inputs = [i for i in op.inputs if i >= 0 and i not in const]
        sg.outputs = list(op.outputs)
        try:
            it = _interpreter(bytes(fu.convert_object_to_bytearray(model)), threads)
            ms = _time_interpreter(it, rng, loop)
        except (ValueError, RuntimeError):
            ms = float("nan")
        first = next((i for i in op.inputs if i >= 0), None)
        name = all_tensors[op.outputs[0]].name
        ops.append(OpTime(name.decode() if isinstance(name, bytes) else str(name), op_type, ms,
                          _tflite_macs(op_type, all_tensors, op),
                          type_names.get(all_tensors[first].type, "?") if first is not None else "-"))
    sg.operators, sg.inputs, sg.outputs = all_ops, sg_inputs, sg_outputs
    ops = [o for o in ops if o.ms == o.ms]  # ops the interpreter could not run alone are left out
    return Profile(str(path), "litert (XNNPACK)", threads, whole, tuple(ops),
                   "each op cut out into a one-op model and timed alone (p50)")


# ---------------------------------------------------------------- ONNX


def _onnx_macs(path: Path) -> dict[str, int]:
    """MACs of Conv / MatMul nodes by node name (needs the `onnx` package; {} without it)."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        return {}
    m = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        dims = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    # QDQ graphs: a weight reaches Conv through DequantizeLinear; follow it back to the initializer.
    producers = {o: n for n in m.graph.node for o in n.output}

    def weight_shape(name):
        if name in inits:
            return inits[name]
        n = producers.get(name)
        return weight_shape(n.input[0]) if n is not None and n.op_type == "DequantizeLinear" else None

    out = {}
    for n in m.graph.node:
        if n.op_type == "Conv" and len(n.input) > 1:
            w, o = weight_shape(n.input[1]), shapes.get(n.output[0])
            if w is not None and o:
                out[n.name] = int(np.prod(o) * np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm") and len(n.input) > 1:
            w, o = weight_shape(n.input[1]), shapes.get(n.output[0])
            if w is not None and o:
                out[n.name] = int(np.prod(o) * w[0])
    return out


def profile_onnx(path: Path, *, threads: int = 2, runs: int = 50) -> Profile:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    rng = np.random.default_rng(0)
    plain = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = plain.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: rng.normal(0, 1, size=shape).astype(np.float32)}
    whole = latency_stats(time_callable(lambda: plain.run(None, feed), warmup=5, min_runs=runs,
                                        min_time_s=1.0)).p50_ms
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-prof-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(5):
            sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, list[float]] = {}
    node_type: dict[str, str] = {}
    dtypes: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        per_node.setdefault(name, []).append(e["dur"] / 1000.0)
        node_type[name] = e.get("args", {}).get("op_name", "?")
        dtypes[name] = (e.get("args", {}).get("input_type_shape") or [{}])[0] and next(
            iter((e["args"]["input_type_shape"][0]).keys()), "?")
    macs = _onnx_macs(Path(path))
    ops = []
    for name, durs in per_node.items():
        durs = durs[-runs:]
        ops.append(OpTime(name, node_type[name], float(np.median(durs)), macs.get(name, 0), str(dtypes.get(name, "?"))))
    return Profile(str(path), "onnxruntime CPU", threads, whole, tuple(ops),
                   "onnxruntime profiler, per-node kernel time (median over runs; fused nodes keep one name)")


def profile_file(path: str | Path, *, threads: int = 2) -> Profile:
    kind = check_model_file(path)
    return profile_tflite(Path(path), threads=threads) if kind == "tflite" else profile_onnx(Path(path), threads=threads)
