"""`.tflite` files on LiteRT's GPU accelerator (CompiledModel; WebGPU over Vulkan on Linux), TF-free.

A GPU row never runs on the CPU under a GPU label: the accelerator is asked for alone (no CPU fallback),
so a file with an op the GPU cannot take fails with the ops named; the input buffers must live in GPU
memory; and the adapter LiteRT selected (vendor, device, software or not) is read from its own log line
and reported. `run` returns once the output has been read back to the host, so a timed call covers the
whole asynchronous GPU submission.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError
from deeplab_edge.logs import QUIET_ENV, captured_stderr

from .metadata import read_tflite_metadata
from .standard_metadata import read_standard_metadata, tflite_output_activation
from .tensors import TensorInfo, choose_output, run_error
from .vulkan import VulkanSetup, activate, find_vulkan

PRECISIONS = ("fp32", "fp16")
HOST_MEMORY = 1  # LiteRT's TensorBuffer type for plain host memory: a CPU buffer
_ADAPTER = re.compile(r"Selected adapter: (.*)")
_REASONS = ("not supported by GPU", "Couldn't load Vulkan", "Found no drivers", "No adapters found",
            "Failed to initialize", "not accelerated", "Unsupported", "unsupported", "dynamic-sized tensors")


@dataclass(frozen=True)
class GpuInfo:
    """What ran a GPU row: the adapter as LiteRT names it, and what that means for its numbers."""

    adapter: str  # e.g. "SwiftShader Device (Subzero), arch=swiftshader, vendor=google, backend=Vulkan, ..."
    emulated: bool  # a software device (SwiftShader, lavapipe, llvmpipe): correct results, a CPU's latency
    precision: str  # "fp32": 32-bit arithmetic enforced; "fp16": half precision allowed (LiteRT's default on
    # GPUs with fp16 support, what phones run; a device without it, such as SwiftShader, computes in fp32)
    fully_accelerated: bool
    vulkan: str  # "system" or the SwiftShader folder

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def label(self) -> str:
        device = self.adapter.split(",")[0]
        return f"LiteRT GPU {self.precision}: {device}"


def is_emulated(adapter: str) -> bool:
    a = adapter.lower()
    return any(k in a for k in ("swiftshader", "cpu / software", "llvmpipe", "lavapipe", "software"))


def _reason(log: str, error: str | None) -> str:
    """The accelerator's own reason from its log (the unsupported ops it lists, the Vulkan failure), else the
    exception's detail lines."""
    all_lines = log.splitlines()
    lines = [ln.strip() for ln in all_lines if any(k in ln for k in _REASONS)]
    for i, ln in enumerate(all_lines):
        if "not supported by GPU" in ln:
            ops = [ln.split("GPU delegate:", 1)[-1].strip()]
            for nxt in all_lines[i + 1:]:
                if "operations will run" in nxt or not nxt.strip():
                    break
                ops.append(nxt.strip())
            return "ops the GPU cannot run: " + " ".join(o for o in ops if o)[:400]
    if lines:
        return "; ".join(dict.fromkeys(re.sub(r"^(WARNING|ERROR|INFO): (\[[^]]*\] )?", "", ln) for ln in lines))[:400]
    text = " ".join(ln.strip(" └") for ln in str(error or "").strip().splitlines()[1:])
    return (text or "no reason logged")[:300]


def _replay_unless_quiet(log: str) -> None:
    """The accelerator's own lines: shown with --verbose (or to library users), hidden when the CLI is quiet,
    where its teardown lines at exit are hidden too."""
    if os.environ.get(QUIET_ENV) == "1":
        _quiet_at_exit()
    elif log:
        sys.stderr.write(log)


def _quiet_at_exit() -> None:
    import atexit

    def mute() -> None:
        with contextlib.suppress(OSError):
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 2)

    if not getattr(_quiet_at_exit, "done", False):
        atexit.register(mute)
        _quiet_at_exit.done = True


class LiteRTGpuBackend:
    """A float `.tflite` file on LiteRT's GPU accelerator; the `Backend` interface of `backends.py`."""

    name = "litert-gpu"

    def __init__(self, path: Path, *, output: str | None = None, precision: str = "fp32",
                 setup: VulkanSetup | None = None) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"GPU precision must be one of {', '.join(PRECISIONS)}; received {precision!r}.")
        self.path = Path(path)
        setup = setup or find_vulkan()
        if setup is None:
            raise UserError("No Vulkan device here for LiteRT's GPU accelerator: install the GPU's Vulkan driver "
                            "(e.g. mesa-vulkan-drivers, or NVIDIA's driver), or `deeplab-edge gpu "
                            "--install-swiftshader` for the software device (correct results, CPU speed).")
        activate(setup)
        buf = self.path.read_bytes()
        self.metadata = read_tflite_metadata(buf, source=str(self.path))
        self.standard = read_standard_metadata(buf, source=str(self.path))
        log: list[str] = []
        error = None
        with captured_stderr(log):
            try:
                from ai_edge_litert.compiled_model import (
                    CompiledModel,
                    GpuOptions,
                    HardwareAccelerator,
                    Options,
                )

                options = Options(hardware_accelerators=HardwareAccelerator.GPU,
                                  gpu_options=GpuOptions(enforce_f32=precision == "fp32"))
                self._model = CompiledModel.from_file(str(self.path), options=options)
                fully = self._model.is_fully_accelerated()
                types = list(self._model.get_input_buffer_requirements(0).get("supported_types", []))
            except (RuntimeError, ValueError) as e:
                error = str(e)
            gc.collect()  # a failed model's environment logs its teardown now, into the captured log
        text = "".join(log)
        _replay_unless_quiet(text)
        if error is not None:
            raise UserError(f"LiteRT's GPU accelerator cannot run {self.path} on its own: {_reason(text, error)}. "
                            "Run it on the CPU (`device` cpu), or export a file without those ops.")
        adapter = (_ADAPTER.findall(text) or ["unnamed adapter (LiteRT logged none)"])[0].strip()
        if not fully:
            self.close()
            raise UserError(f"LiteRT's GPU accelerator takes only part of {self.path}; a GPU row is not run half on "
                            f"the CPU. {_reason(text, None)}")
        if HOST_MEMORY in types and len(types) == 1:
            self.close()
            raise UserError(f"LiteRT's GPU accelerator did not take {self.path}: its input stays in host memory, so "
                            "it would run on the CPU and is not reported as a GPU run. GPU rows are for float files "
                            "(fp32, fp16); run int8 files on the CPU.")
        key = list(self._model.get_signature_list())[0]
        ins = list(self._model.get_input_tensor_details(key).values())
        outs = list(self._model.get_output_tensor_details(key).values())
        self.outputs = tuple(TensorInfo(o["name"], tuple(int(d) for d in o["shape"]), np.dtype(o["dtype"]))
                             for o in outs)
        k = choose_output(self.path, list(self.outputs), output, len(ins))
        inp = ins[0]
        self.input = TensorInfo(inp["name"], (None, *(int(d) for d in inp["shape"][1:])), np.dtype(inp["dtype"]))
        self.output = self.outputs[k]
        self._out_index = k
        self._in_shape = tuple(int(d) for d in inp["shape"])
        if self.input.dtype.kind in "iu" and self.input.dtype != np.uint8 or self.output.dtype.kind in "iu":
            self.close()
            raise UserError(f"{self.path} has integer input/output tensors ({self.input.dtype}/{self.output.dtype}); "
                            "the GPU rows run float files (fp32, fp16). Run int8 files on the CPU.")
        self.activation = tflite_output_activation(buf, self._output_tensor_index(buf, k))
        self._inputs = self._model.create_input_buffers(0)
        self._outputs = self._model.create_output_buffers(0)
        self.gpu = GpuInfo(adapter, is_emulated(adapter), precision, True, setup.source)
        self.providers = (self.gpu.label,)
        self.notes: tuple[str, ...] = (
            (f"emulated GPU: {adapter.split(',')[0]} runs Vulkan on the CPU, so this row proves the file and the "
             "GPU path but its latency is not a GPU's",) if self.gpu.emulated else ())
        self.num_threads = None
        self._ran = False
        self._lock = threading.RLock()

    @staticmethod
    def _output_tensor_index(buf: bytes, k: int) -> int:
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(buf))
        return int(model.subgraphs[0].outputs[k])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for `batch`, one image at a time (the file's batch), each read back to the host; one call at a
        time (the compiled model and its buffers are not safe for concurrent use)."""
        with self._lock:
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape[1:]) != self._in_shape[1:]:
            raise UserError(f"{self.path} takes inputs of shape {self._in_shape}; received {tuple(batch.shape)}.")
        if batch.shape[0] != self._in_shape[0]:
            return np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        if not self._ran:  # the first run sets up LiteRT's buffer environment, which logs natively
            log: list[str] = []
            with captured_stderr(log):
                try:
                    return self._run_one(batch)
                finally:
                    self._ran = True
                    _replay_unless_quiet("".join(log))
        return self._run_one(batch)

    def _run_one(self, batch: np.ndarray) -> np.ndarray:
        out = self.output
        try:
            self._inputs[0].write(np.ascontiguousarray(batch, dtype=self.input.dtype))
            self._model.run_by_index(0, self._inputs, self._outputs)
            # read() waits for the GPU: what a caller times includes the whole submission.
            flat = self._outputs[self._out_index].read(int(np.prod(out.shape)), out.dtype)
        except (RuntimeError, ValueError) as e:
            raise run_error(self.path, "LiteRT GPU", e) from None
        return np.asarray(flat).reshape(out.shape).copy()

    def close(self) -> None:
        """Free the GPU model and its buffers now (their teardown lines captured)."""
        if getattr(self, "_model", None) is None:
            return
        log: list[str] = []
        with captured_stderr(log):
            self._inputs = self._outputs = None
            self._model = None
            gc.collect()
        _replay_unless_quiet("".join(log))

    def __del__(self) -> None:
        if not sys.is_finalizing():
            with contextlib.suppress(Exception):
                self.close()
