"""Quantisation-aware fine-tuning: a trained float checkpoint fine-tuned with fake int8 quantisation.

The graph (BatchNorm folded into the convs, tfmot's default 8-bit fake quantisation) is `qat_graph`'s;
this module runs the fine-tuning and writes best_qat.h5 (the best weights by validation mIoU),
model_info.json (marked as QAT), log.csv and qat_result.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import write_text_atomic

from ._keras import keras, tf
from .checkpoint import ModelInfo, load_checkpoint, write_info
from .data import FolderDataset
from .data_check import quick_scan, require_batch
from .input_pipeline import file_pairs, input_error, make_tf_dataset
from .model_file import detect_kind
from .qat_graph import QAT_WEIGHTS, qat_graph, require_tfmot
from .train import TrainSettings, adamw_cosine, compile_segmenter


@dataclass(frozen=True)
class QatResult:
    """What `train_qat` wrote and measured (also written as qat_result.json)."""

    checkpoint: Path  # best_qat.h5: the best epoch's weights by validation mIoU
    best_val_miou: float  # nan when no epoch was validated
    start_val_miou: float  # fake int8, before fine-tuning
    val_miou: tuple[float, ...]  # per epoch
    seconds: float
    source: str  # the float checkpoint fine-tuned, as given

    def to_dict(self) -> dict:
        return {"from": self.source, "start_val_miou": self.start_val_miou, "val_miou": list(self.val_miou),
                "best_val_miou": self.best_val_miou, "seconds": self.seconds, "checkpoint": str(self.checkpoint)}


def _float_checkpoint(checkpoint: str | Path, dataset: FolderDataset) -> tuple[keras.Model, ModelInfo]:
    """(model, info) of a deeplab-edge float checkpoint that predicts `dataset`'s classes; anything else
    (a Keras 3 model, a SavedModel, a checkpoint without info, a QAT one) is refused, saying what to use."""
    kind = detect_kind(checkpoint)
    if kind != "tf-keras":
        what = "a Keras 3 model" if kind == "keras3" else "a SavedModel"
        raise UserError(f"{checkpoint} is {what}; `qat_from` fine-tunes with tensorflow-model-optimization, which "
                        "works on tf-keras models only. Recover int8 accuracy with `deeplab-edge export "
                        "--auto-keep-float`, or export --formats tflite_int16x8.")
    model, info = load_checkpoint(checkpoint)
    if info is None:
        raise UserError(f"{checkpoint} has no deeplab-edge model info; `qat_from` takes a checkpoint that "
                        "`deeplab-edge train` wrote.")
    if info.extra.get("qat"):
        raise UserError(f"{checkpoint} is already quantisation-aware; pass the float checkpoint it came from.")
    if dataset.num_classes != info.config.num_classes:
        raise UserError(f"{checkpoint} predicts {info.config.num_classes} classes but {dataset.root} has "
                        f"{dataset.num_classes}; pass `data` with the dataset it was trained on.")
    return model, info


def _qat_inputs(dataset: FolderDataset, settings: TrainSettings, info: ModelInfo):
    """(training batches, validation batches, training pairs), the files scanned first; a dataset without
    validation images is refused (the best epoch is kept by validation mIoU)."""
    size = info.config.input_size
    train = settings.train_samples(dataset)
    if not dataset.val:
        raise UserError(f"{dataset.root} has no validation images; QAT keeps the best epoch by validation mIoU.")
    native = quick_scan(dataset, train + dataset.val, verbose=settings.verbose)
    require_batch(len(train), settings.batch_size)
    norm = {"mean": info.mean, "std": info.std}
    n = dataset.num_classes
    train_ds = make_tf_dataset(file_pairs(train, n, seed=settings.seed, cache=settings.cache, native=native[:len(train)]),
                               size, batch_size=settings.batch_size, training=True, seed=settings.seed, **norm)
    val_ds = make_tf_dataset(file_pairs(dataset.val, n, native=native[len(train):]), size,
                             batch_size=settings.batch_size, training=False, **norm)
    return train_ds, val_ds, train


def _qat_info(info: ModelInfo, checkpoint: str | Path, settings: TrainSettings, per_tensor: bool) -> ModelInfo:
    """The float checkpoint's info, marked as QAT (where from, epochs, per-tensor, learning rate)."""
    return ModelInfo(config=info.config, class_names=info.class_names, preset=info.preset, mean=info.mean,
                     std=info.std, extra={**info.extra, "qat": {"from": str(Path(checkpoint).resolve()),
                                                                 "epochs": settings.epochs,
                                                                 "per_tensor": per_tensor,
                                                                 "learning_rate": settings.learning_rate}})


def train_qat(checkpoint: str | Path, dataset: FolderDataset, out_dir: str | Path, settings: TrainSettings, *,
              per_tensor: bool = False, progress=print) -> QatResult:
    """Fine-tune `checkpoint` (a deeplab-edge float checkpoint) with fake int8 quantisation on `dataset`;
    write best_qat.h5 (best validation mIoU), model_info.json, log.csv and qat_result.json. `per_tensor`:
    one weight scale per tensor (default per channel); `progress` gets the starting mIoU line."""
    require_tfmot()
    out = Path(out_dir)
    best = out / QAT_WEIGHTS
    if best.exists():
        raise UserError(f"{out} already holds a QAT run ({best}); choose another `out_dir`.")
    model, info = _float_checkpoint(checkpoint, dataset)
    keras.utils.set_random_seed(settings.seed)
    train_ds, val_ds, train = _qat_inputs(dataset, settings, info)
    steps = settings.epoch_steps(len(train))
    qat = qat_graph(model, info.config, per_tensor=per_tensor)
    compile_segmenter(qat, adamw_cosine(settings, steps), info.config.num_classes)
    out.mkdir(parents=True, exist_ok=True)
    try:
        start = qat.evaluate(val_ds, verbose=0, return_dict=True)["miou"]
        progress(f"QAT start (fake int8, before fine-tuning): val mIoU {100 * start:.1f}%")
        t0 = time.perf_counter()
        hist = qat.fit(train_ds.repeat(), epochs=settings.epochs, steps_per_epoch=steps, validation_data=val_ds,
                       verbose=settings.verbose, callbacks=[
                           keras.callbacks.ModelCheckpoint(str(best), monitor="val_miou", mode="max",
                                                           save_best_only=True, save_weights_only=True, verbose=0),
                           keras.callbacks.CSVLogger(str(out / "log.csv"))])
    except tf.errors.OpError as e:
        raise input_error(e, dataset, train + dataset.val) from None
    seconds = time.perf_counter() - t0
    write_info(out, _qat_info(info, checkpoint, settings, per_tensor))
    vals = tuple(float(v) for v in hist.history.get("val_miou", []))
    result = QatResult(best, max(vals) if vals else float("nan"), float(start), vals, seconds, str(checkpoint))
    write_text_atomic(out / "qat_result.json", json.dumps(result.to_dict(), indent=2))
    return result
