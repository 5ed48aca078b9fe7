"""DeepLabV3+ graph: shapes per backbone, size errors, presets, MAC counts."""

from __future__ import annotations

import numpy as np
import pytest

from deeplab_edge.errors import UserError


@pytest.mark.parametrize("backbone,alpha,size,stride", [
    ("mobilenetv2", 0.35, 64, 16),
    ("mobilenetv2", 0.35, 64, 8),
    ("mobilenetv2", 1.0, 96, 16),
    ("resnet50", 1.0, 64, 16),
])
def test_output_shape_per_backbone(backbone, alpha, size, stride):
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import DeepLabConfig

    cfg = DeepLabConfig(backbone=backbone, alpha=alpha, input_size=(size, size), num_classes=5,
                        output_stride=stride, width=32, separable=backbone != "resnet50")
    m = build_deeplabv3plus(cfg)
    y = m(np.random.rand(2, size, size, 3).astype("float32"))
    assert y.shape == (2, size, size, 5)
    # The ASPP input is at the configured output stride.
    high = m.get_layer("block_13_expand_relu" if backbone == "mobilenetv2" else "conv4_block6_2_relu")
    assert high.output_shape[1] == size // stride


def test_non_divisible_size_names_nearest_valid():
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import get_preset

    with pytest.raises(UserError, match=r"250x250 is not divisible by 16.*nearest valid size 256x256"):
        build_deeplabv3plus(get_preset("tiny").config.replace(input_size=(250, 250)))


def test_unsupported_output_stride_and_unknown_backbone():
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import DeepLabConfig, get_preset

    with pytest.raises(UserError, match="supports output stride"):
        build_deeplabv3plus(DeepLabConfig(backbone="resnet50", input_size=(64, 64), output_stride=8))
    with pytest.raises(UserError, match="Did you mean: mobilenetv2"):
        build_deeplabv3plus(DeepLabConfig(backbone="mobilenet_v2", input_size=(64, 64)))
    with pytest.raises(UserError, match="Did you mean: edge"):
        get_preset("edg")


def test_presets_and_separable_choice():
    from deeplab_edge.model.presets import PRESETS

    assert PRESETS["resnet50"].config.separable is False and PRESETS["resnet50"].config.input_size == (512, 512)
    assert PRESETS["edge"].config.separable and PRESETS["mobilenetv2"].config.separable
    assert PRESETS["edge"].config.replace(output_stride=8).rates == (12, 24, 36)
    assert PRESETS["edge"].config.replace(alpha=None).alpha == 0.35  # None never overrides


def test_mac_count_matches_hand_count():
    from deeplab_edge.model._keras import keras
    from deeplab_edge.model.flops import model_cost

    inp = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(inp)  # 8*8*3*3*4*6 = 13824
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)  # 8*8*3*3*6 = 3456
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2, use_bias=False)(x)  # 12
    cost = model_cost(keras.Model(inp, x))
    assert cost.macs == 13824 + 3456 + 12
    assert cost.params == 4 * 6 * 9 + 6 * 9 + 12


def test_separable_edge_is_much_cheaper_than_plain():
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("edge").config.replace(input_size=(128, 128), width=256)
    sep = model_cost(build_deeplabv3plus(cfg)).macs
    plain = model_cost(build_deeplabv3plus(cfg.replace(separable=False))).macs
    assert plain > 4 * sep


def test_backbone_weights_load_by_name(tmp_path):
    from deeplab_edge.model.backbone_weights import load_backbone_weights
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("tiny").config
    src = build_deeplabv3plus(cfg)
    path = tmp_path / "w.h5"
    src.save_weights(str(path))
    dst = build_deeplabv3plus(cfg)
    assert load_backbone_weights(dst, str(path)) > 10
    np.testing.assert_array_equal(dst.get_layer("Conv1").get_weights()[0], src.get_layer("Conv1").get_weights()[0])
    with pytest.raises(UserError, match="does not exist"):
        load_backbone_weights(dst, str(tmp_path / "missing.h5"))


@pytest.mark.parametrize("backbone,app,feature", [
    ("mobilenetv2", "MobileNetV2", "block_13_expand_relu"),
    ("resnet50", "ResNet50", "conv4_block6_2_relu"),
])
def test_keras_applications_backbones_load_by_name_with_identical_features(backbone, app, feature, tmp_path):
    """A keras.applications model saved with random weights (and random BatchNorm statistics) loads into
    our backbone with every backbone layer matched, and computes the same backbone features."""
    from deeplab_edge.model._keras import keras
    from deeplab_edge.model.backbone_weights import load_backbone_weights
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.presets import get_preset

    size = 64
    ref = getattr(keras.applications, app)(weights=None, include_top=False, input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    for layer in ref.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2, w.shape) if i != 3 else rng.uniform(0.5, 2, w.shape)
                               for i, w in enumerate(layer.get_weights())])
    path = tmp_path / f"{app}.h5"
    ref.save(str(path))  # a whole tf-keras model, as keras.applications' users save one
    cfg = get_preset(backbone).config.replace(num_classes=3, input_size=(size, size))
    ours = build_deeplabv3plus(cfg)
    ref_names = {layer.name for layer in ref.layers if layer.weights}
    backbone_layers = [layer for layer in ours.layers if layer.weights and layer.name in ref_names]
    assert load_backbone_weights(ours, str(path)) == len(backbone_layers) > 50
    head = [layer.name for layer in ours.layers if layer.weights and layer.name not in ref_names]
    assert head and all(n.startswith(("aspp", "decoder", "logits", "classifier")) for n in head), head
    # The same RGB photo pixels, each model with its own preprocessing: keras.applications' preprocess_input
    # (ResNet50: caffe, BGR minus ImageNet's means; MobileNetV2: x / 127.5 - 1) against our preset's
    # (pixel - mean) / std on RGB.
    pixels = rng.uniform(0, 255, size=(2, size, size, 3)).astype(np.float32)
    module = {"ResNet50": keras.applications.resnet50, "MobileNetV2": keras.applications.mobilenet_v2}[app]
    preset = get_preset(backbone)
    ours_in = (pixels - np.float32(preset.mean)) / np.float32(preset.std)
    want = keras.Model(ref.input, ref.get_layer(feature).output).predict(module.preprocess_input(pixels.copy()),
                                                                         verbose=0)
    got = keras.Model(ours.input, ours.get_layer(feature).output).predict(ours_in, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_backbone_weights_imagenet_uses_keras_cache_and_offline_names_the_file(tmp_path, monkeypatch):
    """`--backbone-weights imagenet` takes keras.applications' file from keras' cache; without it and without
    a network, the error names the file and where to get it."""
    from deeplab_edge.errors import UserError
    from deeplab_edge.model import backbone_weights
    from deeplab_edge.model._keras import keras
    from deeplab_edge.model.presets import get_preset

    cfg = get_preset("edge").config
    name, url = backbone_weights.imagenet_file(cfg)
    assert name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" and url.endswith(name)
    assert backbone_weights.imagenet_file(get_preset("resnet50").config)[0] == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(UserError, match=rf"(?s)Cannot download .*{name}.*`backbone_weights` FILE"):
        backbone_weights.imagenet_weights(cfg)
    monkeypatch.undo()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35, input_shape=(96, 96, 3)).save_weights(
        str(tmp_path / "keras" / "models" / name))
    assert backbone_weights.imagenet_weights(cfg) == tmp_path / "keras" / "models" / name  # the cache, no network
