"""The tf.data pipeline: (image, mask) pairs from files or arrays, augmented and normalised into model batches.

A data problem found while decoding travels out of tf.data with a marker (`DATA_ERROR`), so the error that
training raises still names its file (`data_error`, `input_error`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

from ._keras import tf
from .data import IGNORE_LABEL, FolderDataset, Sample, check_labels, load_pair, read_mask
from .data_check import check_dataset, problems_error

DATA_ERROR = "deeplab-edge data error: "  # marks a UserError raised inside the tf.data pipeline
SHUFFLE_BUFFER = 256  # decoded pairs held for shuffling when a cache replays them in a fixed order


def _decode_pair(image_path: bytes, mask_path: bytes, num_classes) -> tuple[np.ndarray, np.ndarray]:
    """tf.numpy_function body: `load_pair` on two paths; a data problem travels out with a marker."""
    try:
        return load_pair(Sample(Path(image_path.decode()), Path(mask_path.decode())), int(num_classes))
    except UserError as e:
        raise ValueError(DATA_ERROR + str(e)) from None


def _decode_mask(mask_path: bytes, num_classes) -> np.ndarray:
    """tf.numpy_function body: a checked mask (labels < classes or ignore), problems marked as in `_decode_pair`."""
    try:
        path = Path(mask_path.decode())
        mask = read_mask(path)
        check_labels(mask, path, int(num_classes))
        return mask
    except UserError as e:
        raise ValueError(DATA_ERROR + str(e)) from None


def data_error(error: Exception) -> UserError | None:
    """The UserError behind a tf.data failure that `_decode_pair` raised (it names the file), else None."""
    text = str(error)
    if DATA_ERROR not in text:
        return None
    return UserError(text.split(DATA_ERROR, 1)[1].splitlines()[0].strip())


def cache_key(samples) -> str:
    """A digest of the files' paths, sizes and modification times: a changed dataset gets a new cache file."""
    h = hashlib.sha256()
    for s in samples:
        for p in (s.image, s.mask):
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def file_pairs(samples, num_classes: int, *, seed: int | None = None, shard: tuple[int, int] = (1, 0),
               cache: str | None = None, native: tuple[bool, ...] = ()):
    """tf.data of (uint8 HxWx3 image, uint8 HxW mask) at each file's own size, decoded from the file paths in
    parallel: Pillow through tf.numpy_function (EXIF rotation, palette masks, the same checks and messages as
    `load_pair`), except images that `native` (from `check_dataset(quick=True)`) marks as upright RGB/gray
    JPEG or PNG, which tf.io decodes (1.3x faster here: benchmarks/train_scaling.py); their masks still go
    through Pillow (TensorFlow turns palette PNGs into RGB).

    `shard` = (pipelines, index) keeps every pipelines-th file (one worker's share). `seed`: the file order is
    reshuffled every pass (only paths are held, so memory does not grow with the dataset); None keeps it.
    `cache`: "memory" or a folder keeps the decoded pairs after the first pass (tf.data cache files named by
    `cache_key`); the cached pairs are then shuffled in a buffer of SHUFFLE_BUFFER.
    """
    flags = list(native) if len(native) == len(samples) else [False] * len(samples)
    ds = tf.data.Dataset.from_tensor_slices(([str(s.image) for s in samples], [str(s.mask) for s in samples], flags))
    if shard[0] > 1:
        ds = ds.shard(*shard)
    if seed is not None and cache is None:
        ds = ds.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)

    def pillow(image_path, mask_path):
        img, mask = tf.numpy_function(_decode_pair, [image_path, mask_path, num_classes], [tf.uint8, tf.uint8],
                                      stateful=False)
        return img, mask

    def tf_io(image_path, mask_path):
        data = tf.io.read_file(image_path)
        img = tf.cond(tf.io.is_jpeg(data),  # Pillow's IDCT, for the same pixels
                      lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                      lambda: tf.io.decode_png(data, channels=3))
        mask = tf.numpy_function(_decode_mask, [mask_path, num_classes], tf.uint8, stateful=False)
        return img, mask

    def decode(image_path, mask_path, use_tf):
        img, mask = tf.cond(use_tf, lambda: tf_io(image_path, mask_path), lambda: pillow(image_path, mask_path))
        return tf.ensure_shape(img, [None, None, 3]), tf.ensure_shape(mask, [None, None])

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is not None:
        if cache == "memory":
            ds = ds.cache()
        else:
            folder = Path(cache)
            folder.mkdir(parents=True, exist_ok=True)
            ds = ds.cache(str(folder / f"pairs-{cache_key(samples)}-{shard[1]}of{shard[0]}"))
        if seed is not None:
            ds = ds.shuffle(min(SHUFFLE_BUFFER, len(samples)), seed=seed, reshuffle_each_iteration=True)
    return ds


def array_pairs(images: np.ndarray, masks: np.ndarray, *, seed: int | None = None):
    """tf.data of in-memory (image, mask) uint8 pairs (tests, small sets); `seed` reshuffles every pass."""
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    return ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True) if seed is not None else ds


def make_tf_dataset(pairs, size: tuple[int, int], *, batch_size: int, training: bool, mean, std, seed: int = 0,
                    scale_range: tuple[float, float] = (0.75, 1.5)):
    """Model batches from a dataset of uint8 (image, mask) pairs of any size (`file_pairs`, `array_pairs`).

    Training: one resample from the pair's own resolution to the model size times a random scale in
    `scale_range` (image bilinear with antialiasing, mask nearest), pad (the mean colour; the ignore label in
    the mask), random crop to `size`, random flip. Otherwise: the whole image resized to `size`, as the
    runtime does. Then (pixel - mean) / std, batch (dropping a last partial batch when training), prefetch.
    The random draws are stateless, from a per-element seed stream of `seed`: the same batches whatever the
    order in which the parallel map's threads run (a new stream every pass).
    """
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    h, w = int(size[0]), int(size[1])

    def resize(img, mask, nh, nw):
        img = tf.image.resize(tf.cast(img, tf.float32), (nh, nw), method="bilinear", antialias=True)
        mask = tf.image.resize(tf.cast(mask[..., None], tf.int32), (nh, nw), method="nearest")
        return img, mask

    def augment(img, mask, element_seed):
        seeds = tf.random.experimental.stateless_split(element_seed, 3)
        s = tf.random.stateless_uniform([], seeds[0], *scale_range)
        nh = tf.cast(tf.round(h * s), tf.int32)
        nw = tf.cast(tf.round(w * s), tf.int32)
        img, mask = resize(img, mask, nh, nw)
        ph, pw = tf.maximum(h - nh, 0), tf.maximum(w - nw, 0)
        img = tf.pad(img - tf.constant(mean), [[0, ph], [0, pw], [0, 0]]) + tf.constant(mean)
        mask = tf.pad(mask - IGNORE_LABEL, [[0, ph], [0, pw], [0, 0]]) + IGNORE_LABEL
        both = tf.concat([img, tf.cast(mask, tf.float32)], axis=-1)
        both = tf.image.stateless_random_crop(both, (h, w, 4), seeds[1])
        both = tf.image.stateless_random_flip_left_right(both, seeds[2])
        return both[..., :3], both[..., 3]

    def whole(img, mask):
        img, mask = resize(img, mask, h, w)
        return img, mask[..., 0]

    def finish(img, mask):
        img = (tf.clip_by_value(img, 0.0, 255.0) - tf.constant(mean)) / tf.constant(std)
        return tf.ensure_shape(img, [h, w, 3]), tf.ensure_shape(tf.cast(mask, tf.int32), [h, w])

    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((pairs, seeds)).map(lambda p, sd: finish(*augment(p[0], p[1], sd)),
                                                     num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = pairs.map(lambda i, m: finish(*whole(i, m)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def input_error(error: Exception, dataset: FolderDataset, samples) -> Exception:
    """What to raise for an error out of the input pipeline: a data problem names its file (Pillow's decoder
    says which; for tf.io's, every pair is decoded again to find it), anything else is returned as is."""
    found = data_error(error)
    if found is not None or not isinstance(error, tf.errors.InvalidArgumentError) or not samples:
        return found or error
    report = check_dataset(dataset, samples=samples)
    return problems_error(dataset, report) if report.problems else error
