"""Backbones in a small name-keyed table. Each returns its feature pyramid as a dict.

Keys: "low" (stride 4, the decoder's skip) and "high" (stride `output_stride`, ASPP's input).
Swapping a backbone touches this table, not the DeepLabV3+ code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deeplab_edge.errors import UserError

from ._keras import keras
from .layers import BN_MOMENTUM, AtrousDepthwiseConv2D


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable  # (inputs, *, alpha, output_stride, native) -> {"low": tensor, "high": tensor}
    output_strides: tuple[int, ...]
    low_layer: str
    high_layer: str
    note: str


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# (expansion t, channels c, repeats n, stride s) of MobileNetV2.
_MBV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
# Blocks 0-12; block_13 contributes only its expand conv (the high-level feature).


def build_mobilenetv2(inputs, *, alpha: float, output_stride: int, native: bool = True) -> dict:
    """MobileNetV2 truncated at `block_13_expand_relu`, with the layer names of keras.applications.

    Names match `keras.applications.MobileNetV2`, so a local weights file for it loads by name.
    At output stride 8, block 6 keeps stride 1 and blocks 7-13 use dilation 2 (as DeepLab does).
    """
    bn = dict(epsilon=1e-3, momentum=BN_MOMENTUM)  # keras.applications: 0.999, too slow for short runs
    layers = keras.layers
    x = layers.Conv2D(_make_divisible(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    x = layers.BatchNormalization(name="bn_Conv1", **bn)(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    feats: dict = {}
    stride, rate, block_id = 2, 1, 0
    for t, c, n, s in _MBV2_BLOCKS:
        for i in range(n):
            block_stride = s if i == 0 else 1
            block_rate = rate
            if block_stride > 1 and stride * block_stride > output_stride:
                block_stride, rate = 1, rate * block_stride  # keep resolution, dilate what follows
            prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
            in_ch = x.shape[-1]
            out_ch = _make_divisible(int(c * alpha))
            h = x
            if block_id:
                h = layers.Conv2D(t * in_ch, 1, use_bias=False, name=prefix + "expand")(h)
                h = layers.BatchNormalization(name=prefix + "expand_BN", **bn)(h)
                h = layers.ReLU(6.0, name=prefix + "expand_relu")(h)
                if block_id == 3:
                    feats["low"] = h
            dw_cls = AtrousDepthwiseConv2D if native else layers.DepthwiseConv2D
            h = dw_cls(3, strides=block_stride, padding="same", dilation_rate=block_rate, use_bias=False,
                       name=prefix + "depthwise")(h)
            h = layers.BatchNormalization(name=prefix + "depthwise_BN", **bn)(h)
            h = layers.ReLU(6.0, name=prefix + "depthwise_relu")(h)
            h = layers.Conv2D(out_ch, 1, use_bias=False, name=prefix + "project")(h)
            h = layers.BatchNormalization(name=prefix + "project_BN", **bn)(h)
            if block_stride == 1 and in_ch == out_ch:
                h = layers.Add(name=prefix + "add")([x, h])
            x = h
            stride *= block_stride
            block_id += 1
    # block_13's expand conv: the high-level feature (before its stride-2 depthwise).
    in_ch = x.shape[-1]
    h = layers.Conv2D(6 * in_ch, 1, use_bias=False, name="block_13_expand")(x)
    h = layers.BatchNormalization(name="block_13_expand_BN", **bn)(h)
    feats["high"] = layers.ReLU(6.0, name="block_13_expand_relu")(h)
    return feats


def build_resnet50(inputs, *, alpha: float, output_stride: int, native: bool = True) -> dict:
    """keras.applications.ResNet50 (random init), low `conv2_block3_2_relu`, high `conv4_block6_2_relu`."""
    if alpha != 1.0:
        raise UserError(f"Backbone 'resnet50' has no width multiplier; received alpha={alpha}. Use alpha 1.0.")
    net = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    return {"low": net.get_layer("conv2_block3_2_relu").output, "high": net.get_layer("conv4_block6_2_relu").output}


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenetv2": BackboneSpec(
        "mobilenetv2", build_mobilenetv2, (8, 16), "block_3_expand_relu", "block_13_expand_relu",
        "MobileNetV2 with width multiplier alpha; output stride 16 or 8 (dilated blocks 7-13).",
    ),
    "resnet50": BackboneSpec(
        "resnet50", build_resnet50, (16,), "conv2_block3_2_relu", "conv4_block6_2_relu",
        "ResNet50 (keras.applications), output stride 16.",
    ),
}
