"""One small interface over LiteRT (`.tflite`) and onnxruntime (`.onnx`).

`open_backend(path)` checks the file (`files.check_model_file`), opens the matching interpreter and
returns an object with `.input` / `.output` (`TensorInfo`), `.metadata`, `.name`, `.providers` and
`.run(batch) -> raw output`. Raw means as the file gives it: quantised integers for an int8 file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from deeplab_edge.errors import UserError, unknown_name_error
from deeplab_edge.logs import held_stderr

from .files import check_model_file
from .metadata import ModelMetadata, read_onnx_metadata, read_tflite_metadata
from .standard_metadata import StandardMetadata, read_standard_metadata, tflite_output_activation
from .tensors import TensorInfo, choose_output, run_error

# --providers spellings -> onnxruntime execution provider names.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


class Backend(Protocol):
    name: str
    path: Path
    input: TensorInfo
    output: TensorInfo
    outputs: tuple[TensorInfo, ...]  # all of the file's outputs; `output` is the one used
    metadata: ModelMetadata | None
    standard: StandardMetadata | None  # the standard TFLite metadata (TFLite files only)
    activation: str | None  # "sigmoid" / "softmax" when the graph's last op applies one, else None
    providers: tuple[str, ...]
    notes: tuple[str, ...]

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def default_threads() -> int:
    """The thread count both runtimes get when none is asked for: the CPUs this process may run on.

    LiteRT alone would take 1 and onnxruntime every physical core; one rule for both keeps their
    timings comparable."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(num_threads: int | None) -> int:
    """A positive thread count; None -> `default_threads()`."""
    if num_threads is None:
        return default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise UserError(f"`num_threads` must be a positive integer; received {num_threads!r}.")
    return int(num_threads)


def parse_providers(providers: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """'cuda,cpu' or ['cuda', 'CPUExecutionProvider'] -> onnxruntime provider names, in order."""
    if providers is None:
        return ()
    items = providers.split(",") if isinstance(providers, str) else list(providers)
    out = []
    for item in (str(p).strip() for p in items):
        if not item:
            continue
        if item in PROVIDERS.values():
            out.append(item)
            continue
        key = item.lower().removesuffix("executionprovider")
        if key not in PROVIDERS:
            raise unknown_name_error("provider", item, PROVIDERS)
        out.append(PROVIDERS[key])
    return tuple(dict.fromkeys(out))


DEVICES = ("cpu", "gpu", "auto")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                 "DmlExecutionProvider", "CoreMLExecutionProvider")


def open_backend(path: str | Path, *, backend: str | None = None, num_threads: int | None = None,
                 providers: str | list[str] | tuple[str, ...] | None = None, output: str | None = None,
                 device: str = "cpu", gpu_precision: str = "fp32") -> Backend:
    """Check `path` and open it with LiteRT or onnxruntime (chosen by `backend` or the file).

    `output` names the output tensor to use when the file has several (default: the first). `device` "gpu":
    a `.tflite` file on LiteRT's GPU accelerator (`gpu.LiteRTGpuBackend`, `gpu_precision` fp32 or fp16), an
    `.onnx` file on the GPU providers onnxruntime has (TensorRT, CUDA, ...); never the CPU under that name.
    `device` "auto": the GPU where the file runs fully there, else the CPU, with the GPU's refusal in `notes`.
    """
    path = Path(path)
    if device not in DEVICES:
        raise unknown_name_error("device", str(device), DEVICES)
    kind = check_model_file(path, backend)
    num_threads = check_threads(num_threads)
    if device == "auto":
        if providers:  # explicit providers decide where it runs
            device = "cpu"
        else:
            try:
                g = open_backend(path, backend=backend, num_threads=num_threads, output=output, device="gpu",
                                 gpu_precision=gpu_precision)
                info = getattr(g, "gpu", None)
                if info is None or not info.emulated:
                    return g
                why = f"the only Vulkan device is a software one ({info.adapter}), slower than the CPU"
                del g, info
            except UserError as e:
                why = f"the GPU path is not available: {e}"
            b = open_backend(path, backend=backend, num_threads=num_threads, output=output, device="cpu")
            b.notes = (*b.notes, f"`device` auto: on the CPU, as {why}")
            return b
    wanted = parse_providers(providers)
    if kind == "tflite":
        if any(p != PROVIDERS["cpu"] for p in wanted):
            raise UserError(f"`providers` {','.join(wanted)} applies to .onnx files only; {path.name} runs on "
                            "LiteRT (XNNPACK on the CPU, `device` gpu for its GPU accelerator). Drop `providers` "
                            "or use the .onnx file.")
        if device == "gpu":
            from .gpu import LiteRTGpuBackend

            return LiteRTGpuBackend(path, output=output, precision=gpu_precision)
        return LiteRTBackend(path, num_threads=num_threads, output=output)
    if device == "gpu":
        return _onnx_on_gpu(path, num_threads, wanted, output)
    return OnnxBackend(path, num_threads=num_threads, providers=wanted, output=output)


def webgpu_plugin_devices() -> tuple[int, str]:
    """(devices, a line) of onnxruntime's WebGPU plugin EP (PyPI onnxruntime-ep-webgpu) when it is installed.

    Only reported: the plugin registers with onnxruntime 1.32 but found no device here (no physical GPU;
    SwiftShader is not offered to it), so no session is built on it until a device can be tested."""
    try:
        import onnxruntime_ep_webgpu as plugin
    except ImportError:
        return 0, ""
    import onnxruntime as ort

    try:
        ort.register_execution_provider_library("webgpu", plugin.get_library_path())
    except Exception as e:  # already registered, or a library this onnxruntime cannot load
        if "already" not in str(e).lower():
            return 0, f"onnxruntime-ep-webgpu is installed but does not load: {str(e).splitlines()[0][:200]}"
    n = sum(d.ep_name == plugin.get_ep_name() for d in ort.get_ep_devices())
    return n, f"onnxruntime-ep-webgpu is installed and finds {n} WebGPU device(s)"


def _onnx_on_gpu(path: Path, num_threads: int, wanted: tuple[str, ...], output: str | None) -> OnnxBackend:
    """The .onnx file on the GPU providers asked for (else every GPU provider this onnxruntime has), refused
    when none of them took the session: a GPU row never runs on the CPU under that name."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = tuple(p for p in (wanted or GPU_PROVIDERS) if p in available and p != PROVIDERS["cpu"])
    if not chosen:
        plugin = webgpu_plugin_devices()[1]
        raise UserError(f"onnxruntime here has no GPU execution provider (available: {', '.join(available)}"
                        f"{'; ' + plugin if plugin else ''}). Install "
                        "onnxruntime-gpu on a machine with an NVIDIA GPU (pip install 'deeplab-edge[gpu]' after pip "
                        "uninstall onnxruntime), or run on the CPU.")
    opened = OnnxBackend(path, num_threads=num_threads, providers=chosen, output=output)
    if not any(p in opened.providers for p in chosen):
        raise UserError(f"onnxruntime did not enable {', '.join(chosen)} for {path} (it runs on "
                        f"{', '.join(opened.providers)}): the GPU driver or CUDA libraries are missing.")
    return opened


class LiteRTBackend:
    """A `.tflite` file on `ai_edge_litert.interpreter.Interpreter` (XNNPACK by default)."""

    name = "litert"

    def __init__(self, path: Path, *, num_threads: int | None = None, output: str | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        num_threads = check_threads(num_threads)
        buf = self.path.read_bytes()
        self.metadata = read_tflite_metadata(buf, source=str(self.path))
        self.standard = read_standard_metadata(buf, source=str(self.path))
        try:
            with held_stderr():  # "Created TensorFlow Lite XNNPACK delegate" when the CLI is quiet
                self._interp = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"LiteRT cannot load {self.path}: {e}. Export it again with `deeplab-edge export`.") from None
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        self.outputs = tuple(_litert_info(o) for o in outs)
        k = choose_output(self.path, list(self.outputs), output, len(ins))
        self._in, self._out = ins[0], outs[k]
        self.input, self.output = _litert_info(self._in), self.outputs[k]
        self.activation = tflite_output_activation(buf, int(self._out["index"]))
        self.providers = ("XNNPACK (CPU)",)
        self.notes: tuple[str, ...] = ()
        self.num_threads = num_threads
        self._shape = tuple(int(v) for v in self._in["shape"])
        # A LiteRT interpreter is not safe for concurrent use ("There is at least 1 reference to internal
        # data"); one call at a time per backend, so one Predictor can be shared by a thread pool.
        self._lock = threading.RLock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape) != self._shape:
            try:
                self._resize(tuple(batch.shape))
            except (ValueError, RuntimeError) as e:
                if batch.shape[1:] != self._shape[1:]:
                    raise UserError(f"{self.path} takes inputs of shape {self._shape}; it cannot be resized to "
                                    f"{tuple(batch.shape)} ({e}).") from None
                # The graph does not take this batch size: one image at a time.
                return np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self._invoke(batch)

    def _resize(self, shape: tuple[int, ...]) -> None:
        self._interp.resize_tensor_input(self._in["index"], list(shape), strict=False)
        self._interp.allocate_tensors()
        self._shape = shape

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        try:
            self._interp.set_tensor(self._in["index"], np.ascontiguousarray(batch, dtype=self.input.dtype))
            self._interp.invoke()
            return self._interp.get_tensor(self._out["index"])  # get_tensor already returns a copy
        except (ValueError, RuntimeError) as e:  # e.g. "Input tensor 56 lacks data": a damaged file
            raise run_error(self.path, "LiteRT", e) from None


def _litert_info(d: dict) -> TensorInfo:
    sig = d.get("shape_signature")
    shape = tuple(None if int(s) < 0 else int(s) for s in (sig if sig is not None and len(sig) else d["shape"]))
    scale, zp = d.get("quantization", (0.0, 0))
    dtype = np.dtype(d["dtype"])
    quant = dtype.kind in "iu" and scale and scale > 0
    return TensorInfo(d["name"], shape, dtype, float(scale) if quant else None, int(zp) if quant else None)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


class OnnxBackend:
    """An `.onnx` file on onnxruntime; CUDA only when asked for and available, else CPU."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, num_threads: int | None = None, providers: tuple[str, ...] = (),
                 output: str | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; the converter's deprecation notices are not the user's
        num_threads = check_threads(num_threads)
        options.intra_op_num_threads = num_threads
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available]
        missing = [p for p in providers if p not in available]
        self.notes = tuple(f"{p} was requested but is not available here (available: {', '.join(available)})"
                           for p in missing)
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        try:
            # No silent retry (it prints a banner); a file that does not load is a UserError below.
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=chosen,
                                                 enable_fallback=0)
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"onnxruntime cannot load {self.path}: {first}. Export it again with "
                            "`deeplab-edge export`.") from None
        self._session.enable_fallback()  # at run time a failing GPU provider may still fall back to CPU
        self.providers = tuple(self._session.get_providers())
        self.num_threads = num_threads
        try:  # names and metadata of a damaged file may not even decode as UTF-8
            custom = self._session.get_modelmeta().custom_metadata_map
            ins, outs = self._session.get_inputs(), self._session.get_outputs()
        except UnicodeDecodeError as e:
            raise UserError(f"{self.path} has names or metadata that are not valid UTF-8 ({e.reason} at byte "
                            f"{e.start}); the file is damaged. Export it again with `deeplab-edge export`.") from None
        self.metadata = read_onnx_metadata(custom, source=str(self.path))
        self.standard = None
        self.outputs = tuple(_ort_info(o, strict=False) for o in outs)
        k = choose_output(self.path, list(self.outputs), output, len(ins))
        self.input, self.output = _ort_info(ins[0]), _ort_info(outs[k])
        self.activation = None  # onnxruntime does not expose the graph; the predictor looks at the values

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input.dtype)
        try:
            return self._session.run([self.output.name], {self.input.name: x})[0]
        except Exception as e:  # onnxruntime's own Fail/RuntimeException types: a graph that cannot run
            raise run_error(self.path, "onnxruntime", e) from None


def _ort_info(arg, *, strict: bool = True) -> TensorInfo:
    """onnxruntime's NodeArg -> TensorInfo; a type the runtime cannot use is an error when `strict`
    (the input and the chosen output), else kept as an object dtype (side outputs nobody reads)."""
    if arg.type not in _ORT_TYPES and not strict:
        return TensorInfo(arg.name, tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape),
                          np.dtype(object))
    if arg.type not in _ORT_TYPES:
        raise UserError(f"Tensor {arg.name!r} has type {arg.type}; supported: {', '.join(_ORT_TYPES)}.")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorInfo(arg.name, shape, np.dtype(_ORT_TYPES[arg.type]))
