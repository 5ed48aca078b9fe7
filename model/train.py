"""Training under a tf.distribute strategy, with best-by-val-mIoU checkpoints, resume, CSV log and curves.

`train` runs named steps in order: open the run folder (new, or resumed after its checks), scan the data,
the run's model info, the input pipelines under the strategy, the model (built or resumed), its callbacks,
`fit`, and the result.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import write_text_atomic

from ._keras import keras, tf
from .backbone_weights import imagenet_weights, load_backbone_weights
from .callbacks import EmbedInfo, EpochTimer
from .checkpoint import ModelInfo, load_checkpoint, read_info, write_info
from .data import FolderDataset, Sample
from .data_check import quick_scan, require_batch
from .deeplab import build_deeplabv3plus, check_config
from .distribute import cluster_role, get_strategy
from .input_pipeline import array_pairs, file_pairs, input_error, make_tf_dataset
from .losses import IgnoreLabelCrossEntropy, IgnoreLabelMeanIoU
from .precise_bn import RecalibrateBatchNorm
from .presets import DEFAULT_MEAN, DEFAULT_STD, PRESETS, DeepLabConfig, get_preset
from .run_folder import RunFolder, open_run, plot_curves, read_log


@dataclass(frozen=True)
class TrainSettings:
    """How to train: budget, optimiser, data (subset, cache), seed, resume, devices; checked on creation."""

    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    steps_per_epoch: int | None = None  # None: one pass over the training set
    max_train_images: int | None = None
    seed: int = 0
    resume: bool = False
    verbose: int = 1
    backbone_weights: str | None = None
    devices: tuple[str, ...] | None = None  # for MirroredStrategy; None = all visible
    bn_recalibration_steps: int = 20
    cache: str | None = None  # None: decode every pass; "memory" or a folder: keep decoded pairs (file_pairs)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "steps_per_epoch", "max_train_images"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise UserError(f"--{name.replace('_', '-')} must be a whole number of at least 1; received {value}.")
        if not self.learning_rate > 0:
            raise UserError(f"`lr` must be positive, e.g. 2e-3; received {self.learning_rate}.")
        if self.cache not in (None, "memory") and Path(self.cache).exists() and not Path(self.cache).is_dir():
            raise UserError(f"`cache` {self.cache} is a file; pass `memory` or a folder for the cache files.")
        if self.bn_recalibration_steps < 0 or self.weight_decay < 0:
            raise UserError("bn_recalibration_steps and weight_decay must not be negative; received "
                            f"{self.bn_recalibration_steps} and {self.weight_decay}.")

    def train_samples(self, dataset: FolderDataset) -> tuple[Sample, ...]:
        """The training pairs used: the first `max_train_images` of `dataset.train`, else all of them."""
        return dataset.train[: self.max_train_images] if self.max_train_images else dataset.train

    def epoch_steps(self, n_train: int) -> int:
        """Steps per epoch: `steps_per_epoch`, else one pass over `n_train` images."""
        return self.steps_per_epoch or max(1, n_train // self.batch_size)


@dataclass(frozen=True)
class TrainResult:
    """What `train` wrote and measured (also written as train_result.json)."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_val_miou: float
    epochs_run: int
    seconds: float
    images_per_second: float
    history: dict = field(default_factory=dict)
    final_weights_sha256: str = ""  # of the last epoch's weights: equal on every worker of a cluster
    kept: bool = True  # False for a non-chief worker, whose outputs were scratch and are gone

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "best_checkpoint": str(self.best_checkpoint),
                "last_checkpoint": str(self.last_checkpoint), "best_val_miou": self.best_val_miou,
                "epochs_run": self.epochs_run, "seconds": self.seconds,
                "images_per_second": self.images_per_second, "history": self.history,
                "final_weights_sha256": self.final_weights_sha256}


def weights_digest(model) -> str:
    """sha256 over every weight's bytes, in the model's order."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def adamw_cosine(settings: TrainSettings, steps: int) -> keras.optimizers.Optimizer:
    """AdamW at `settings.learning_rate`, cosine-decayed to 2% of it over `settings.epochs` x `steps` steps."""
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(1, settings.epochs * steps),
                                                      alpha=0.02)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=settings.weight_decay)


def compile_segmenter(model: keras.Model, optimizer, num_classes: int) -> None:
    """Compile `model` with the ignore-label cross-entropy and mean IoU (logged as `miou`)."""
    model.compile(optimizer=optimizer, loss=IgnoreLabelCrossEntropy(), metrics=[IgnoreLabelMeanIoU(num_classes)])


def _backbone_file(config: DeepLabConfig, settings: TrainSettings, run: RunFolder) -> str | None:
    """The weights file a new run starts its backbone from (`imagenet`: keras.applications' file), else None."""
    if settings.backbone_weights == "imagenet" and not run.resuming:
        return str(imagenet_weights(config))
    return settings.backbone_weights


@dataclass(frozen=True)
class _TrainData:
    """Where training and validation pairs come from: the dataset's files, or in-memory `arrays`
    (train_x, train_y, val_x, val_y)."""

    dataset: FolderDataset
    train_samples: tuple[Sample, ...]
    native: tuple[bool, ...]  # per file (train, then val): whether tf.io decodes it (`quick_scan`)
    arrays: tuple | None
    cache: str | None

    @property
    def n_train(self) -> int:
        return len(self.arrays[0]) if self.arrays is not None else len(self.train_samples)

    @property
    def n_val(self) -> int:
        return len(self.arrays[2]) if self.arrays is not None else len(self.dataset.val)

    @property
    def files(self) -> tuple[Sample, ...]:
        """The files decoded (none for arrays): what a failure in the pipeline is traced back to."""
        return () if self.arrays is not None else self.train_samples + self.dataset.val

    def pairs(self, which: str, seed: int | None, shard: tuple[int, int] = (1, 0)):
        """tf.data of uint8 (image, mask) pairs of the `which` split ("train" or "val")."""
        if self.arrays is not None:
            tx, ty, vx, vy = self.arrays
            x, y = (tx, ty) if which == "train" else (vx, vy)
            return array_pairs(x, y, seed=seed).shard(*shard)
        n = self.dataset.num_classes
        if which == "train":
            return file_pairs(self.train_samples, n, seed=seed, shard=shard, cache=self.cache,
                              native=self.native[:self.n_train])
        return file_pairs(self.dataset.val, n, native=self.native[self.n_train:])


def _train_data(dataset: FolderDataset, settings: TrainSettings, arrays) -> _TrainData:
    """The run's pairs, the files scanned first (`quick_scan`) and at least one batch of them."""
    samples = settings.train_samples(dataset)
    native = () if arrays is not None else quick_scan(dataset, samples + dataset.val, verbose=settings.verbose)
    data = _TrainData(dataset, samples, native, arrays, settings.cache)
    require_batch(data.n_train, settings.batch_size)
    return data


def _run_info(config: DeepLabConfig, dataset: FolderDataset, run: RunFolder, preset: str, mean, std) -> ModelInfo | None:
    """A resumed run's own info; else the config, class names and normalisation (`mean`/`std`, else the preset's)."""
    if run.resuming:
        return read_info(run.last)
    norm = get_preset(preset) if preset in PRESETS else None
    mean = tuple(mean if mean is not None else (norm.mean if norm else DEFAULT_MEAN))
    std = tuple(std if std is not None else (norm.std if norm else DEFAULT_STD))
    return ModelInfo(config=config, class_names=dataset.class_names, preset=preset, mean=mean, std=std,
                     extra={"dataset": str(dataset.root), "layout": dataset.layout})


def _input_pipelines(strategy: tf.distribute.Strategy, data: _TrainData, size: tuple[int, int],
                     settings: TrainSettings, norm: dict):
    """(training batches distributed over the strategy, validation batches or None)."""
    global_batch = settings.batch_size
    if global_batch % strategy.num_replicas_in_sync:
        raise UserError(f"`batch_size` {global_batch} does not split evenly over {strategy.num_replicas_in_sync} "
                        "replicas (devices x workers); pass a multiple of that number.")

    def train_input(ctx):  # one input pipeline per worker, over its share of the files
        return make_tf_dataset(data.pairs("train", settings.seed, (ctx.num_input_pipelines, ctx.input_pipeline_id)),
                               size, batch_size=ctx.get_per_replica_batch_size(global_batch), training=True,
                               seed=settings.seed * 1000 + ctx.input_pipeline_id, **norm).repeat()

    train_ds = strategy.distribute_datasets_from_function(train_input)
    if not data.n_val:
        return train_ds, None
    val_ds = make_tf_dataset(data.pairs("val", None), size, batch_size=global_batch, training=False, **norm)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train_ds, val_ds.with_options(options)


def _model(strategy: tf.distribute.Strategy, config: DeepLabConfig, run: RunFolder, backbone_file: str | None,
           settings: TrainSettings, steps: int, monitor: str) -> tuple[keras.Model, float | None]:
    """(compiled model, best `monitor` value so far): resumed from last.keras, or built (backbone weights
    loaded) with a new optimizer; both under the strategy."""
    best_before = None
    with strategy.scope():
        if run.resuming:
            # compile=True brings back AdamW's moments and step with the original schedule.
            model, _ = load_checkpoint(run.last, compile=True)
            optimizer = model.optimizer
            vals = [float(r[monitor]) for r in read_log(run.log) if r.get(monitor)]
            best_before = max(vals) if vals else None
        else:
            model = build_deeplabv3plus(config)
            if backbone_file:
                load_backbone_weights(model, backbone_file)
            optimizer = adamw_cosine(settings, steps)
        compile_segmenter(model, optimizer, config.num_classes)
    return model, best_before


def _callbacks(run: RunFolder, info: ModelInfo | None, timer: EpochTimer, calib_ds, val_ds, settings: TrainSettings,
               monitor: str, best_before: float | None) -> list:
    """Timing, BN recalibration then validation, best/last checkpoints with the info inside, the CSV log."""
    return [
        timer,  # first: time training steps only
        RecalibrateBatchNorm(calib_ds, val_ds, settings.bn_recalibration_steps, settings.verbose),
        keras.callbacks.ModelCheckpoint(str(run.best), monitor=monitor, mode="max", save_best_only=True,
                                        initial_value_threshold=best_before, verbose=0),
        keras.callbacks.ModelCheckpoint(str(run.last), save_best_only=False, verbose=0),
        EmbedInfo((run.best, run.last), info),  # after the checkpoints: the info goes into each .keras
        keras.callbacks.CSVLogger(str(run.log), append=run.initial_epoch > 0),
    ]


def _result(run: RunFolder, model: keras.Model, hist, timer: EpochTimer, settings: TrainSettings, steps: int,
            monitor: str, seconds: float, kept: bool) -> TrainResult:
    """The run's TrainResult (also written as train_result.json), after drawing curves.png."""
    rows = read_log(run.log)
    best = max((float(r[monitor]) for r in rows if r.get(monitor)), default=0.0)
    plot_curves(run.log, run.out / "curves.png")
    ran = settings.epochs - run.initial_epoch
    batch = settings.batch_size
    # Throughput from epochs after the first (the first includes tracing).
    ips = (steps * batch * max(1, ran - 1) / sum(timer.seconds[1:])) if ran > 1 else (
        steps * batch / max(timer.seconds[0], 1e-9))
    result = TrainResult(run.out, run.best, run.last, best, ran, seconds, ips,
                         {k: [float(v) for v in vals] for k, vals in hist.history.items()},
                         weights_digest(model), kept)
    write_text_atomic(run.out / "train_result.json", json.dumps(result.to_dict(), indent=2))
    return result


def _train_as_worker(config: DeepLabConfig, dataset: FolderDataset, settings: TrainSettings, **kwargs) -> TrainResult:
    """A non-chief worker's share of a cluster run: the same training, saved into a scratch folder (saving takes
    part in the workers' collective ops) that is removed when it finishes."""
    if settings.resume:
        raise UserError("`resume` under multi-worker training is not supported; start a new run.")
    scratch = Path(tempfile.mkdtemp(prefix="deeplab-edge-worker-"))
    try:
        return train(config, dataset, scratch, settings, _scratch=True, **kwargs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train(config: DeepLabConfig, dataset: FolderDataset, out_dir: str | Path, settings: TrainSettings,
          *, preset: str = "", arrays=None, mean=None, std=None, _scratch: bool = False) -> TrainResult:
    """Train DeepLabV3+ on `dataset`; write best.keras, last.keras, model_info.json, log.csv, curves.png.

    `arrays` (train_x, train_y, val_x, val_y) skips decoding the folder (tests, the demo's cache).
    The input normalisation is `mean`/`std` if given, else the preset's (a resumed run keeps its own);
    it is stored in the checkpoint's info, where export reads it.

    Under MultiWorkerMirroredStrategy (TF_CONFIG) every worker runs this with the same arguments; only the
    chief writes to `out_dir`. The others save into a scratch folder that is removed when they finish.
    """
    role = None if _scratch else cluster_role()
    if role is not None and not role[0]:
        return _train_as_worker(config, dataset, settings, preset=preset, arrays=arrays, mean=mean, std=std)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.num_classes != dataset.num_classes:
        config = config.replace(num_classes=dataset.num_classes)
    run = open_run(out, config, resume=settings.resume, epochs=settings.epochs)
    check_config(config)  # a bad size or backbone is refused before any data is decoded
    backbone_file = _backbone_file(config, settings, run)
    keras.utils.set_random_seed(settings.seed)
    data = _train_data(dataset, settings, arrays)
    info = _run_info(config, dataset, run, preset, mean, std)
    norm = {"mean": info.mean if info else DEFAULT_MEAN, "std": info.std if info else DEFAULT_STD}
    strategy = get_strategy(settings.devices)
    train_ds, val_ds = _input_pipelines(strategy, data, config.input_size, settings, norm)
    steps = settings.epoch_steps(data.n_train)
    monitor = "val_miou" if val_ds is not None else "miou"
    if not run.resuming:
        write_info(out, info)
    model, best_before = _model(strategy, config, run, backbone_file, settings, steps, monitor)
    timer = EpochTimer()
    # Un-augmented training images in a seeded order: the same batches on every worker of a cluster.
    calib_ds = make_tf_dataset(data.pairs("train", settings.seed + 1), config.input_size,
                               batch_size=settings.batch_size, training=False, **norm)
    callbacks = _callbacks(run, info, timer, calib_ds, val_ds, settings, monitor, best_before)
    t0 = time.perf_counter()
    try:
        hist = model.fit(train_ds, epochs=settings.epochs, initial_epoch=run.initial_epoch,
                         steps_per_epoch=steps, callbacks=callbacks, verbose=settings.verbose)
    except tf.errors.OpError as e:
        raise input_error(e, dataset, data.files) from None
    return _result(run, model, hist, timer, settings, steps, monitor, time.perf_counter() - t0, not _scratch)
