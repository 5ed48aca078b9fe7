"""Conv blocks for DeepLabV3+: Conv-BN-ReLU and atrous separable conv, with native dilation.

Keras' own Conv2D/DepthwiseConv2D lower a dilated conv to SPACE_TO_BATCH_ND + conv +
BATCH_TO_SPACE_ND, which the TFLite converter keeps as three ops (and which splits the
XNNPACK partition). The `Atrous*` layers below call the TF ops with their `dilations`
argument instead, which TFLite maps to one CONV_2D / DEPTHWISE_CONV_2D with a
dilation factor and tf2onnx to one Conv with `dilations`. Same weights, same math.

TensorFlow's CPU kernel for a dilated DepthwiseConv2dNative exists only with oneDNN, which TF turns
on by default only on CPUs with AVX-512 VNNI/AMX-class features; on an AVX2-only CPU the op fails
("Current kernel implementation does not support dilations"). So the depthwise layer emits the
native op only while a graph is traced for conversion (`native_dilation_ops()`), and Keras'
space-to-batch form when TensorFlow itself runs it (training, evaluation, verification).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from deeplab_edge.errors import UserError

from ._keras import keras, tf

_NATIVE_DEPTHWISE = False


@contextlib.contextmanager
def native_dilation_ops() -> Iterator[None]:
    """Trace dilated depthwise convs as one native op (for TFLite conversion; never executed by TF)."""
    global _NATIVE_DEPTHWISE
    before, _NATIVE_DEPTHWISE = _NATIVE_DEPTHWISE, True
    try:
        yield
    finally:
        _NATIVE_DEPTHWISE = before

BN_EPS = 1e-3
# Short training budgets (hundreds of steps) need moving statistics that keep up with the weights.
BN_MOMENTUM = 0.9


@keras.utils.register_keras_serializable(package="deeplab_edge")
class AtrousConv2D(keras.layers.Conv2D):
    """Conv2D whose dilation reaches the graph as a native op attribute (stride 1 only)."""

    def convolution_op(self, inputs, kernel):
        if self.strides != (1, 1) or self.dilation_rate == (1, 1):
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(
            inputs, kernel, strides=1, padding=self.padding.upper(), dilations=list(self.dilation_rate)
        )


@keras.utils.register_keras_serializable(package="deeplab_edge")
class AtrousDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D with a native dilation attribute (stride 1, no bias/activation path changes)."""

    def call(self, inputs):
        if self.strides != (1, 1) or self.dilation_rate == (1, 1) or not _NATIVE_DEPTHWISE:
            return super().call(inputs)
        out = tf.raw_ops.DepthwiseConv2dNative(
            input=inputs,
            filter=self.depthwise_kernel,
            strides=[1, 1, 1, 1],
            padding=self.padding.upper(),
            dilations=[1, *self.dilation_rate, 1],
        )
        if self.use_bias:
            out = tf.nn.bias_add(out, self.bias)
        if self.activation is not None:
            out = self.activation(out)
        return out


def folded_kernel(rate: int, feature_hw: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Kernel size and dilation of a 3x3 atrous conv after exact folding on an HxW map.

    With 'same' zero padding, a tap that is `rate` rows away from the centre falls in the
    padding for every output position once rate >= H, so that row of taps only ever
    multiplies zeros and can be dropped; likewise for columns and W.
    """
    kh = kw = 3
    dh = dw = rate
    if feature_hw is not None and rate > 1:
        h, w = feature_hw
        if rate >= h:
            kh, dh = 1, 1
        if rate >= w:
            kw, dw = 1, 1
    return (kh, kw), (dh, dw)


def conv_bn_relu(x, filters: int, kernel_size=1, *, rate: int = 1, name: str, native: bool = True,
                 feature_hw: tuple[int, int] | None = None):
    """Conv -> BN -> ReLU. A 3x3 conv with `rate` > 1 is atrous; it is folded when `feature_hw` is given."""
    dilation = (rate, rate)
    if kernel_size == 3 and rate > 1:
        kernel_size, dilation = folded_kernel(rate, feature_hw)
    conv_cls = AtrousConv2D if native else keras.layers.Conv2D
    x = conv_cls(filters, kernel_size, padding="same", dilation_rate=dilation, use_bias=False,
                 name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def sep_conv_bn_relu(x, filters: int, *, rate: int = 1, name: str, native: bool = True,
                     feature_hw: tuple[int, int] | None = None):
    """Atrous separable conv (DeepLabV3+ paper): depthwise 3x3 with dilation, BN, ReLU, then 1x1, BN, ReLU."""
    kernel_size, dilation = folded_kernel(rate, feature_hw) if rate > 1 else ((3, 3), (1, 1))
    dw_cls = AtrousDepthwiseConv2D if native else keras.layers.DepthwiseConv2D
    x = dw_cls(kernel_size, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pw_relu")(x)


CUSTOM_OBJECTS = {
    "AtrousConv2D": AtrousConv2D,
    "AtrousDepthwiseConv2D": AtrousDepthwiseConv2D,
}


@keras.utils.register_keras_serializable(package="deeplab_edge")
class ArgmaxHead(keras.layers.Layer):
    """Label map head for export: argmax over classes inside the model (int32 output)."""

    def call(self, logits):
        return tf.argmax(logits, axis=-1, output_type=tf.int32)


def with_label_head(model: keras.Model) -> keras.Model:
    """Wrap a logits model so it outputs the (N, H, W) int32 label map instead of full-resolution logits."""
    return keras.Model(model.input, ArgmaxHead(name="labels")(model.output), name=f"{model.name}_labels")


CUSTOM_OBJECTS["ArgmaxHead"] = ArgmaxHead


def with_pixel_input(model: keras.Model, mean, std, *, dtype: str = "uint8") -> keras.Model:
    """`model` behind a first op that takes raw 0..255 RGB pixels and normalises them inside the graph:
    (pixel - mean) / std computed as pixel * (1 / std) - mean / std (a cast, a mul and an add).

    `dtype` "uint8" for files that take the pixels as they are; "float32" (values 0..255) for the
    full-integer converter, which quantises a float input to uint8 itself.
    """
    import numpy as np

    scale = 1.0 / np.asarray(std, np.float64)
    offset = -np.asarray(mean, np.float64) * scale
    inp = keras.Input(model.input_shape[1:], dtype=dtype, name="image")
    x = keras.layers.Rescaling(scale.astype(np.float32).tolist(), offset.astype(np.float32).tolist(),
                               dtype="float32", name="normalise")(inp)
    return keras.Model(inp, model(x), name=model.name)


def at_decoder_stride(model: keras.Model) -> keras.Model:
    """A DeepLabV3+ graph of ours cut before its final bilinear upsampling: logits at the decoder's stride
    (input / 4), for runtimes that compute the label map there and upsample labels."""
    try:
        out = model.get_layer("classifier").output
    except ValueError:
        raise UserError(f"{model.name} has no 'classifier' layer; logits at the decoder stride are available "
                        "for DeepLabV3+ models built by deeplab-edge only.") from None
    return keras.Model(model.input, out, name=model.name)
