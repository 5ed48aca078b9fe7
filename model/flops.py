"""Parameter and multiply-accumulate (MAC) counts of a built Keras model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._keras import keras


@dataclass(frozen=True)
class ModelCost:
    params: int
    macs: int
    macs_by_type: dict

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "macs_by_type": dict(self.macs_by_type)}


def _out_hw(layer) -> tuple[int, int]:
    shape = layer.output_shape
    return int(shape[1]), int(shape[2])


def layer_macs(layer) -> int:
    """MACs of one layer at batch 1: conv, depthwise conv and dense (others ~0 next to them)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        h, w = _out_hw(layer)
        return int(h * w * kh * kw * cin * mult)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        h, w = _out_hw(layer)
        return int(h * w * kh * kw * cin * cout // max(1, getattr(layer, "groups", 1)))
    if isinstance(layer, keras.layers.Dense):
        cin, cout = layer.kernel.shape
        return int(np.prod(layer.output_shape[1:-1] or [1]) * cin * cout)
    return 0


def model_cost(model: keras.Model) -> ModelCost:
    by_type: dict[str, int] = {}
    for layer in model.layers:
        m = layer_macs(layer)
        if m:
            key = "DepthwiseConv2D" if isinstance(layer, keras.layers.DepthwiseConv2D) else (
                "Conv2D" if isinstance(layer, keras.layers.Conv2D) else type(layer).__name__)
            by_type[key] = by_type.get(key, 0) + m
    params = int(sum(np.prod(w.shape) for w in model.weights))
    return ModelCost(params=params, macs=sum(by_type.values()), macs_by_type=by_type)
