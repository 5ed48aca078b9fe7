"""Exact graph simplifications: folding atrous branches, native dilation. Random weights and inputs."""

from __future__ import annotations

import numpy as np
import pytest


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w in ws:
            if "BatchNormalization" in type(layer).__name__:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            else:
                new.append(rng.normal(0, 0.3, w.shape).astype(w.dtype))
        layer.set_weights(new)
    return model


@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("size", [(128, 128), (128, 224), (96, 192)])
def test_folding_is_exact(separable, size):
    from deeplab_edge.model.deeplab import build_deeplabv3plus, rebuild
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("tiny").config.replace(input_size=size, separable=separable, fold_atrous=False)
    full = _randomize(build_deeplabv3plus(cfg))
    folded = rebuild(full, cfg, fold_atrous=True)
    x = np.random.default_rng(1).normal(0, 1, (2, *size, 3)).astype("float32")
    ref = full(x).numpy()
    # Exact up to float32 summation order (oneDNN or Eigen kernels sum the taps differently): relative 1e-6.
    tol = 1e-6 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(ref - folded(x).numpy()).max() < tol
    unfolded = rebuild(folded, cfg, fold_atrous=False)  # a folded checkpoint maps back exactly too
    assert np.abs(ref - unfolded(x).numpy()).max() < tol
    # Something was actually folded: a branch whose rate covers the 1/16 map became 1xk / kx1 / 1x1.
    h, w = size[0] // 16, size[1] // 16
    kernels = {layer.name: layer.kernel_size for layer in folded.layers if layer.name.startswith("aspp_r")
               and hasattr(layer, "kernel_size")}
    r18 = kernels.get("aspp_r18_dw", kernels.get("aspp_r18_conv"))
    assert r18 == (1 if 18 >= h else 3, 1 if 18 >= w else 3)


def test_native_dilation_matches_keras_space_to_batch():
    from deeplab_edge.model.deeplab import build_deeplabv3plus, rebuild
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("tiny").config.replace(input_size=(128, 128), output_stride=8, fold_atrous=False,
                                            native_dilation=False)
    keras_style = _randomize(build_deeplabv3plus(cfg), seed=3)
    native = rebuild(keras_style, cfg, native_dilation=True)
    x = np.random.default_rng(2).normal(0, 1, (2, 128, 128, 3)).astype("float32")
    assert np.abs(keras_style(x).numpy() - native(x).numpy()).max() < 1e-4


def test_tflite_has_no_space_to_batch_with_native_dilation():
    from deeplab_edge.export.tflite import convert_tflite, op_histogram
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("tiny").config.replace(input_size=(128, 128), fold_atrous=False)
    native = op_histogram(convert_tflite(build_deeplabv3plus(cfg), "fp32"))
    wrapped = op_histogram(convert_tflite(build_deeplabv3plus(cfg.replace(native_dilation=False)), "fp32"))
    assert "SPACE_TO_BATCH_ND" not in native and "BATCH_TO_SPACE_ND" not in native
    assert wrapped.get("SPACE_TO_BATCH_ND", 0) >= 1  # what Keras' own layers give


def test_label_head_equals_argmax_of_logits():
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.layers import with_label_head
    from deeplab_edge.model.presets import get_preset

    m = _randomize(build_deeplabv3plus(get_preset("tiny").config), seed=4)
    x = np.random.default_rng(5).normal(0, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(with_label_head(m)(x).numpy(), m(x).numpy().argmax(-1))
