"""The quantisation-aware graph (tensorflow-model-optimization on tf-keras): BatchNorm folded, fake int8.

`qat.train_qat` takes a trained float checkpoint, folds every BatchNorm into the conv before it (BN
statistics stay as trained), wraps that export graph (folded atrous branches) with tfmot's default 8-bit
fake quantisation (`qat_graph`), fine-tunes it, and writes the best weights by validation mIoU as
`best_qat.h5` with a model_info.json that marks them as QAT. Export loads them back (`load_qat`) and writes
full-integer tflite_int8 through the usual pipeline.

tfmot quantises Keras' own layer classes only, so the graph's native-dilation convs are rebuilt as
plain Conv2D/DepthwiseConv2D (same weights; a dilated depthwise conv then reaches TFLite as
SPACE_TO_BATCH_ND + DEPTHWISE_CONV_2D + BATCH_TO_SPACE_ND).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

from ._keras import keras

QAT_WEIGHTS = "best_qat.h5"


def require_tfmot():
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        raise UserError("Quantisation-aware training needs tensorflow-model-optimization: "
                        "pip install 'deeplab-edge[train]' (it is pinned in constraints.txt).") from None
    return tfmot


def _plain(layer):
    """A copy of `layer` as Keras' own class (tfmot knows only those), weights copied after cloning."""
    from .layers import AtrousConv2D, AtrousDepthwiseConv2D

    for ours, theirs in ((AtrousDepthwiseConv2D, keras.layers.DepthwiseConv2D), (AtrousConv2D, keras.layers.Conv2D)):
        if isinstance(layer, ours):
            return theirs.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """The same function with every BatchNormalization that follows a Conv2D/DepthwiseConv2D folded into it
    (kernel scaled per output channel, a bias added): the weights fake quantisation then sees are the
    weights the int8 file holds, whose per-tensor range folding changes."""
    config = model.get_config()
    layers = {entry["name"]: entry for entry in config["layers"]}
    consumers: dict[str, int] = {}
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                consumers[inbound[0]] = consumers.get(inbound[0], 0) + 1
    folded: dict[str, str] = {}  # BN name -> conv name
    for entry in config["layers"]:
        nodes = entry["inbound_nodes"]
        if entry["class_name"] != "BatchNormalization" or len(nodes) != 1 or len(nodes[0]) != 1:
            continue
        source = layers[nodes[0][0][0]]
        conv = model.get_layer(source["name"])
        if isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and consumers.get(source["name"]) == 1:
            folded[entry["name"]] = source["name"]
            source["config"]["use_bias"] = True
    config["layers"] = [entry for entry in config["layers"] if entry["name"] not in folded]
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                inbound[0] = folded.get(inbound[0], inbound[0])
    for out in config["output_layers"]:
        out[0] = folded.get(out[0], out[0])
    from .layers import CUSTOM_OBJECTS

    result = keras.Model.from_config(config, custom_objects=CUSTOM_OBJECTS)
    convs = {conv: bn for bn, conv in folded.items()}
    for layer in result.layers:
        if layer.name in convs:
            bn = model.get_layer(convs[layer.name])
            gamma, beta, mean, var = bn.get_weights()
            scale = gamma / np.sqrt(var + bn.epsilon)
            kernel, *bias = model.get_layer(layer.name).get_weights()
            shape = (1, 1, *kernel.shape[2:]) if isinstance(layer, keras.layers.DepthwiseConv2D) else (1, 1, 1, -1)
            old_bias = bias[0] if bias else 0.0
            layer.set_weights([kernel * scale.reshape(shape), beta + (old_bias - mean) * scale])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return result


def qat_graph(model, config, *, per_tensor: bool = False) -> keras.Model:
    """`model`'s export graph (exact folding) with BatchNorm folded into the convs and fake int8 quantisation; weights per
    channel (default) or, `per_tensor`, one scale per tensor as the int8 file will have them."""
    from .deeplab import rebuild

    tfmot = require_tfmot()
    graph = rebuild(model, config, fold_atrous=True, native_dilation=False)
    plain = keras.models.clone_model(graph, clone_function=_plain)
    for layer in plain.layers:
        layer.set_weights(graph.get_layer(layer.name).get_weights())
    plain = fold_batchnorm(plain)
    scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(disable_per_axis=per_tensor)
    return tfmot.quantization.keras.quantize_apply(tfmot.quantization.keras.quantize_annotate_model(plain), scheme)


def load_qat(path: Path, info) -> keras.Model:
    """The QAT model of a `train --qat-from` run: rebuilt from its info, weights from `path`."""
    from .deeplab import build_deeplabv3plus

    model = qat_graph(build_deeplabv3plus(info.config), info.config, per_tensor=bool(info.extra["qat"].get("per_tensor")))
    try:
        model.load_weights(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot load the QAT weights {path}: {e}. Re-run `deeplab-edge train --qat-from`.") from None
    return model
