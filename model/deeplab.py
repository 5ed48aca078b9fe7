"""DeepLabV3+ (Chen et al., 2018): backbone -> ASPP -> decoder -> classifier, as one Keras functional model.

Every graph is static and converter-friendly: the image-pooling branch pools and upsamples with
fixed sizes, there are no Lambda layers and no Python control flow on tensors.
"""

from __future__ import annotations

import numpy as np

from deeplab_edge.errors import UserError, unknown_name_error

from ._keras import keras
from .backbones import BACKBONES
from .layers import BN_EPS, BN_MOMENTUM, conv_bn_relu, sep_conv_bn_relu
from .presets import DeepLabConfig

# The decoder upsamples by 4, the backbone reduces by the output stride; 16 covers both strides.
SIZE_MULTIPLE = 16


def check_input_size(config: DeepLabConfig) -> None:
    """Refuse input sizes the network cannot divide evenly, naming the nearest valid size."""
    h, w = config.input_size
    m = max(SIZE_MULTIPLE, config.output_stride)
    if h <= 0 or w <= 0 or h % m or w % m:
        def near(v: int) -> int:
            return max(m, int(round(v / m)) * m)
        raise UserError(
            f"Input size {h}x{w} is not divisible by {m} (output stride {config.output_stride}, decoder x4). "
            f"Use the nearest valid size {near(h)}x{near(w)}, or pad your images to it."
        )
    if h < 4 * m or w < 4 * m:
        raise UserError(f"Input size {h}x{w} is too small: use at least {4 * m}x{4 * m}.")


def check_config(config: DeepLabConfig) -> None:
    if config.backbone not in BACKBONES:
        raise unknown_name_error("backbone", config.backbone, BACKBONES)
    spec = BACKBONES[config.backbone]
    if config.output_stride not in spec.output_strides:
        raise UserError(
            f"Backbone {config.backbone!r} supports output stride {list(spec.output_strides)}; "
            f"received {config.output_stride}."
        )
    if config.num_classes < 2:
        raise UserError(f"num_classes must be at least 2; received {config.num_classes}.")
    if config.alpha <= 0:
        raise UserError(f"alpha must be positive; received {config.alpha}.")
    check_input_size(config)


def _aspp(x, config: DeepLabConfig):
    h, w = config.feature_hw
    fold_hw = (h, w) if config.fold_atrous else None
    block = sep_conv_bn_relu if config.separable else conv_bn_relu
    branches = [conv_bn_relu(x, config.width, 1, name="aspp_1x1")]
    for rate in config.rates:
        kw = {} if config.separable else {"kernel_size": 3}
        branches.append(block(x, config.width, rate=rate, name=f"aspp_r{rate}", native=config.native_dilation,
                              feature_hw=fold_hw, **kw))
    # Image pooling with static sizes: mean over the whole map, 1x1 conv, broadcast back.
    p = keras.layers.AveragePooling2D(pool_size=(h, w), name="aspp_pool")(x)
    p = keras.layers.Conv2D(config.width, 1, use_bias=False, name="aspp_pool_conv")(p)
    p = keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name="aspp_pool_bn")(p)
    p = keras.layers.ReLU(name="aspp_pool_relu")(p)
    # Bilinear from a 1x1 map is an exact broadcast (and avoids a deprecated ONNX Resize mode).
    p = keras.layers.UpSampling2D(size=(h, w), interpolation="bilinear", name="aspp_pool_up")(p)
    branches.append(p)
    y = keras.layers.Concatenate(name="aspp_concat")(branches)
    return conv_bn_relu(y, config.width, 1, name="aspp_proj")


def build_deeplabv3plus(config: DeepLabConfig, *, name: str = "deeplabv3plus") -> keras.Model:
    """Build DeepLabV3+ for `config`. Output: float logits (N, H, W, num_classes) at input resolution."""
    check_config(config)
    h, w = config.input_size
    inputs = keras.Input((h, w, 3), name="image")
    feats = BACKBONES[config.backbone].build(
        inputs, alpha=config.alpha, output_stride=config.output_stride, native=config.native_dilation
    )
    x = _aspp(feats["high"], config)
    low = feats["low"]
    scale = low.shape[1] // x.shape[1]
    x = keras.layers.UpSampling2D(size=scale, interpolation="bilinear", name="decoder_up")(x)
    low = conv_bn_relu(low, config.low_level_channels, 1, name="decoder_low")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    for i in (1, 2):
        if config.separable:
            x = sep_conv_bn_relu(x, config.width, name=f"decoder_conv{i}", native=config.native_dilation)
        else:
            x = conv_bn_relu(x, config.width, 3, name=f"decoder_conv{i}", native=config.native_dilation)
    # The 1x1 classifier and bilinear upsampling are both linear and commute exactly (bilinear
    # weights sum to 1), so classifying at stride 4 and then upsampling equals the reverse order
    # at 1/16 of the cost: upsample num_classes channels, not `width`.
    x = keras.layers.Conv2D(config.num_classes, 1, name="classifier")(x)
    x = keras.layers.UpSampling2D(size=h // x.shape[1], interpolation="bilinear", name="logits_up")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def transfer_weights(src: keras.Model, dst: keras.Model) -> int:
    """Copy weights layer by layer (by name), mapping a 3x3 kernel to its folded centre row/column/tap
    (or a folded kernel back to 3x3 with zero taps).

    Exact for the folds of `layers.folded_kernel`: the dropped taps only ever multiply padding zeros.
    Returns the number of layers copied; raises if a layer has no counterpart.
    """
    copied = 0
    for layer in dst.layers:
        if not layer.weights:
            continue
        try:
            src_layer = src.get_layer(layer.name)
        except ValueError:
            raise UserError(f"Layer {layer.name!r} of the new graph has no counterpart in the checkpoint.") from None
        new = []
        for target, value in zip(layer.get_weights(), src_layer.get_weights(), strict=True):
            if target.shape != value.shape:
                value = _centre(value, target.shape)
            new.append(value)
        layer.set_weights(new)
        copied += 1
    return copied


def _centre(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Map a conv kernel onto another spatial size around the centre tap, exactly.

    Smaller target (folding): keep the centre taps, the dropped ones only ever saw padding zeros.
    Larger target (unfolding a folded checkpoint): embed it with zero taps around, which add nothing.
    """
    if kernel.ndim != 4 or len(shape) != 4 or kernel.shape[2:] != tuple(shape[2:]):
        raise UserError(f"Cannot map a weight of shape {kernel.shape} onto {tuple(shape)}.")
    out = np.zeros(shape, kernel.dtype)
    kh, kw = kernel.shape[:2]
    th, tw = shape[:2]
    h, w = min(kh, th), min(kw, tw)
    out[(th - h) // 2:(th - h) // 2 + h, (tw - w) // 2:(tw - w) // 2 + w] = \
        kernel[(kh - h) // 2:(kh - h) // 2 + h, (kw - w) // 2:(kw - w) // 2 + w]
    return out


def rebuild(model: keras.Model, config: DeepLabConfig, **changes) -> keras.Model:
    """Rebuild `model` with config `changes` (e.g. fold_atrous=True) and its trained weights mapped over."""
    new = build_deeplabv3plus(config.replace(**changes), name=model.name)
    transfer_weights(model, new)
    return new
