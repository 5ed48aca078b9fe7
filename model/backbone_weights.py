"""Pretrained backbone weights: a local Keras .h5 file loaded by layer name, or keras.applications' ImageNet file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

from ._keras import keras
from .presets import DeepLabConfig

_KIND_ALIASES = {"depthwise_kernel": "kernel"}  # Keras 3 names a DepthwiseConv2D's kernel plainly
_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def load_backbone_weights(model: keras.Model, path: str) -> int:
    """Load a local Keras .h5 file's weights into `model` by layer name and weight kind (kernel, gamma, ...):
    keras.applications' no-top files, a whole tf-keras model, or a Keras 3 file whose model nests the
    backbone (e.g. a classifier fine-tuned on top of keras.applications' MobileNetV2). A ResNet50 file that is
    not a DeepLab model follows keras.applications' caffe convention (BGR input): its first conv's input
    channels are reversed to take RGB (the resnet50 preset's mean is caffe's, its std 1). Returns the number
    of layers loaded; a layer whose shapes differ is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Backbone weights file {p} does not exist. Pass a local .h5 file such as "
                        "keras.applications' mobilenet_v2 ... _no_top.h5, or `imagenet` for keras.applications' "
                        "own download.")
    stored = _h5_weights(p)
    if "conv1_conv" in stored and not any(k.startswith(("aspp", "decoder")) for k in stored):
        # keras.applications' ResNet50 (caffe weights) takes BGR: its first conv, flipped, takes our RGB.
        stored["conv1_conv"] = {**stored["conv1_conv"], "kernel": stored["conv1_conv"]["kernel"][:, :, ::-1, :]}
    loaded = 0
    for layer in model.layers:
        found = stored.get(layer.name)
        if not found or not layer.weights:
            continue
        values = []
        for w in layer.weights:
            kind = w.name.split("/")[-1].split(":")[0]
            value = found.get(kind, found.get(_KIND_ALIASES.get(kind, kind)))
            if value is None or tuple(value.shape) != tuple(w.shape):
                raise UserError(f"{p}: layer {layer.name!r} has {kind} of shape "
                                f"{None if value is None else tuple(value.shape)}, the model {tuple(w.shape)}; is "
                                "the file for this backbone and alpha?")
            values.append(value)
        layer.set_weights(values)
        loaded += 1
    if loaded == 0:
        raise UserError(f"No layer of {p} matched the model by name; is it for this backbone and alpha?")
    return loaded


def imagenet_file(config: DeepLabConfig) -> tuple[str, str]:
    """(file name, URL) of keras.applications' ImageNet no-top weights for `config`'s backbone."""
    if config.backbone == "resnet50":
        if config.alpha != 1.0:
            raise UserError(f"ImageNet weights exist for ResNet50 at alpha 1.0 only; this model has alpha {config.alpha}.")
        name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return name, _APPS + "resnet/" + name
    if config.alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        raise UserError(f"keras.applications has ImageNet MobileNetV2 weights for alpha 0.35, 0.5, 0.75, 1.0, 1.3 "
                        f"and 1.4; this model has alpha {config.alpha}. Pick one with `alpha`.")
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(config.alpha)}_224_no_top.h5"
    return name, _APPS + "mobilenet_v2/" + name


def imagenet_weights(config: DeepLabConfig) -> Path:
    """keras.applications' ImageNet file for `config`'s backbone, from keras' cache ($KERAS_HOME/models, else
    ~/.keras/models) or downloaded there as keras.applications does; offline, an error naming the file."""
    name, url = imagenet_file(config)
    try:
        return Path(keras.utils.get_file(name, url, cache_subdir="models", cache_dir=os.environ.get("KERAS_HOME")))
    except Exception as e:  # keras wraps URL and HTTP errors in a plain Exception
        raise UserError(f"Cannot download keras.applications' ImageNet weights {name} ({type(e).__name__}: "
                        f"{str(e)[:200]}). On a machine with a network fetch {url} and pass the file with "
                        f"`backbone_weights` FILE, or put it in {Path(os.environ.get('KERAS_HOME', '~/.keras')) / 'models'}/.") from None


def _h5_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {weight kind: array}} of every weight in a Keras .h5 file (optimizer state skipped)."""
    import h5py

    out: dict[str, dict[str, np.ndarray]] = {}

    def visit(name: str, obj) -> None:
        parts = name.split("/")
        if isinstance(obj, h5py.Dataset) and len(parts) >= 2 and parts[0] != "optimizer_weights":
            out.setdefault(parts[-2], {})[parts[-1].split(":")[0]] = obj[()]

    try:
        with h5py.File(path, "r") as f:
            (f["model_weights"] if "model_weights" in f else f).visititems(visit)
    except OSError as e:
        raise UserError(f"Cannot read {path} as a Keras .h5 weights file: {e}.") from None
    return out

