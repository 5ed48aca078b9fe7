"""What every backend says about its tensors, and the checks they share (LiteRT CPU and GPU, onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError, did_you_mean


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: shape with None for dynamic dims, numpy dtype, int quantisation."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None


def run_error(path: Path, engine: str, e: BaseException) -> UserError:
    """A file that loaded but fails when run (damaged weights or shapes): one clear line."""
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    if "reference to internal data" in first:  # not the file: an interpreter used by two callers at once
        return UserError(f"{engine} refused to run {path}: {first}. The file is fine: the interpreter was used "
                         "from two threads at once or a tensor view of it was held; share one Predictor (it "
                         "serialises calls) or open one backend per thread.")
    return UserError(f"{engine} failed to run {path}: {first}. The file is damaged or was not written for "
                     "this runtime; export it again with `deeplab-edge export`.")


def choose_output(path: Path, outputs: list[TensorInfo], wanted: str | None, n_inputs: int) -> int:
    """Index of the output to use: `wanted` by name, else the first. Several inputs are refused."""
    if n_inputs != 1:
        raise UserError(f"{path} has {n_inputs} inputs; a segmentation model takes one image input. "
                        "Export a graph with a single (N, H, W, 3) or (N, 3, H, W) input.")
    if not outputs:
        raise UserError(f"{path} has no outputs.")
    if wanted is None:
        return 0
    names = [o.name for o in outputs]
    if wanted not in names:
        raise UserError(f"{path} has no output named {wanted!r}.{did_you_mean(wanted, names)} "
                        f"Its outputs: {', '.join(names)}.")
    return names.index(wanted)
