"""Quantisation-aware fine-tuning (tensorflow-model-optimization on tf-keras).

`train_qat` takes a trained float checkpoint, wraps its export graph (folded atrous branches) with
tfmot's default 8-bit fake quantisation, fine-tunes it with BatchNorm frozen, and writes the best
weights by validation mIoU as `best_qat.h5` with a model_info.json that marks them as QAT. Export
loads them back (`load_qat`) and writes full-integer tflite_int8 through the usual pipeline.

tfmot quantises Keras' own layer classes only, so the graph's native-dilation convs are rebuilt as
plain Conv2D/DepthwiseConv2D (same weights; a dilated depthwise conv then reaches TFLite as
SPACE_TO_BATCH_ND + DEPTHWISE_CONV_2D + BATCH_TO_SPACE_ND).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import write_text_atomic

from ._keras import keras

QAT_WEIGHTS = "best_qat.h5"


def _tfmot():
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


def qat_graph(model, config, *, per_tensor: bool = False) -> keras.Model:
    """`model`'s export graph (exact folding) with fake int8 quantisation, BatchNorm frozen; weights per
    channel (default) or, `per_tensor`, one scale per tensor as the int8 file will have them."""
    from .deeplab import rebuild

    tfmot = _tfmot()
    graph = rebuild(model, config, fold_atrous=True, native_dilation=False)
    plain = keras.models.clone_model(graph, clone_function=_plain)
    for layer in plain.layers:
        layer.set_weights(graph.get_layer(layer.name).get_weights())
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # inference-mode BN: the statistics the int8 file will fold in
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


def train_qat(checkpoint: str | Path, dataset, out_dir: str | Path, settings, *, per_tensor: bool = False,
              progress=print):
    """Fine-tune `checkpoint` (a deeplab-edge float checkpoint) with fake int8 quantisation on `dataset`;
    write best_qat.h5 (best validation mIoU), model_info.json, log.csv. Returns (best path, best val mIoU,
    seconds)."""
    from .checkpoint import ModelInfo, load_checkpoint, write_info
    from .data import load_arrays, make_tf_dataset
    from .losses import IgnoreLabelCrossEntropy, IgnoreLabelMeanIoU

    _tfmot()
    out = Path(out_dir)
    best = out / QAT_WEIGHTS
    if best.exists():
        raise UserError(f"{out} already holds a QAT run ({best}); choose another --out.")
    model, info = load_checkpoint(checkpoint)
    if info is None:
        raise UserError(f"{checkpoint} has no deeplab-edge model info; --qat-from takes a checkpoint that "
                        "`deeplab-edge train` wrote.")
    if info.extra.get("qat"):
        raise UserError(f"{checkpoint} is already quantisation-aware; pass the float checkpoint it came from.")
    if dataset.num_classes != info.config.num_classes:
        raise UserError(f"{checkpoint} predicts {info.config.num_classes} classes but {dataset.root} has "
                        f"{dataset.num_classes}; pass --data with the dataset it was trained on.")
    keras.utils.set_random_seed(settings.seed)
    size = info.config.input_size
    train = dataset.train[: settings.max_train_images] if settings.max_train_images else dataset.train
    tx, ty = load_arrays(train, size, dataset.num_classes, progress=settings.verbose > 0)
    vx, vy = load_arrays(dataset.val, size, dataset.num_classes, progress=settings.verbose > 0)
    if len(vx) == 0:
        raise UserError(f"{dataset.root} has no validation images; QAT keeps the best epoch by validation mIoU.")
    norm = {"mean": info.mean, "std": info.std}
    train_ds = make_tf_dataset(tx, ty, batch_size=settings.batch_size, training=True, seed=settings.seed, **norm)
    val_ds = make_tf_dataset(vx, vy, batch_size=settings.batch_size, training=False, **norm)
    steps = settings.steps_per_epoch or max(1, len(tx) // settings.batch_size)
    qat = qat_graph(model, info.config, per_tensor=per_tensor)
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(1, settings.epochs * steps),
                                                      alpha=0.02)
    qat.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=settings.weight_decay),
                loss=IgnoreLabelCrossEntropy(), metrics=[IgnoreLabelMeanIoU(info.config.num_classes)])
    out.mkdir(parents=True, exist_ok=True)
    qat_info = ModelInfo(config=info.config, class_names=info.class_names, preset=info.preset, mean=info.mean,
                         std=info.std, extra={**info.extra, "qat": {"from": str(Path(checkpoint).resolve()),
                                                                     "epochs": settings.epochs,
                                                                     "per_tensor": per_tensor,
                                                                     "learning_rate": settings.learning_rate}})
    start = qat.evaluate(val_ds, verbose=0, return_dict=True)["miou"]
    progress(f"QAT start (fake int8, before fine-tuning): val mIoU {100 * start:.1f}%")
    t0 = time.perf_counter()
    hist = qat.fit(train_ds.repeat(), epochs=settings.epochs, steps_per_epoch=steps, validation_data=val_ds,
                   verbose=settings.verbose, callbacks=[
                       keras.callbacks.ModelCheckpoint(str(best), monitor="val_miou", mode="max", save_best_only=True,
                                                       save_weights_only=True, verbose=0),
                       keras.callbacks.CSVLogger(str(out / "log.csv"))])
    seconds = time.perf_counter() - t0
    write_info(out, qat_info)
    vals = [float(v) for v in hist.history.get("val_miou", [])]
    best_miou = max(vals) if vals else float("nan")
    write_text_atomic(out / "qat_result.json", _json({"from": str(checkpoint), "start_val_miou": float(start),
                                                      "val_miou": vals, "best_val_miou": best_miou,
                                                      "seconds": seconds, "checkpoint": str(best)}))
    return best, best_miou, seconds


def _json(d: dict) -> str:
    import json

    return json.dumps(d, indent=2, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
