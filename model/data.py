"""Folder datasets (PASCAL VOC layout, or images/ + masks/), validation, and the tf.data pipeline.

Label 255 means "ignore" everywhere: in the loss, the metrics and the padding of augmented crops.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deeplab_edge.errors import UserError

IGNORE_LABEL = 255
# Inputs are normalised as (pixel - mean) / std with pixel in [0, 255]; the runtime reads these
# from each exported file's metadata.
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path


@dataclass(frozen=True)
class FolderDataset:
    root: Path
    layout: str
    class_names: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.is_file()}


def _read_split(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _split(stems: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic split by a hash of the stem: stable when files are added or removed."""
    def bucket(s: str) -> float:
        return int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    val = [s for s in stems if bucket(s) < val_fraction]
    train = [s for s in stems if bucket(s) >= val_fraction]
    if not val and len(train) > 1:
        val, train = train[:1], train[1:]
    return train, val


def _class_names(root: Path, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for name in ("class_names.txt", "labels.txt"):
        p = root / name
        if p.is_file():
            names = tuple(line.strip() for line in p.read_text().splitlines() if line.strip())
            if len(names) < 2:
                raise UserError(f"{p} lists {len(names)} class name(s); it needs one name per line, at least 2.")
            return names
    return default


def scan_folder(root: str | Path, *, val_fraction: float = 0.1) -> FolderDataset:
    """Find image/mask pairs under `root` in VOC or images/ + masks/ layout, without decoding them."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Dataset folder {root} {'is a file, not a folder' if root.exists() else 'does not exist'}. Pass a folder in PASCAL VOC layout "
                        "(JPEGImages/, SegmentationClass/) or with images/ and masks/ subfolders.")
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        layout, img_dir, mask_dir = "voc", root / "JPEGImages", root / "SegmentationClass"
        split_dir = root / "ImageSets" / "Segmentation"
        default_names: tuple[str, ...] | None = VOC_CLASSES
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        layout, img_dir, mask_dir, split_dir = "plain", root / "images", root / "masks", root
        default_names = None
    else:
        raise UserError(f"{root} has neither JPEGImages/ + SegmentationClass/ (PASCAL VOC layout) nor "
                        "images/ + masks/ subfolders. Arrange your data in one of these layouts.")
    images, masks = _images_in(img_dir), _images_in(mask_dir)
    train_ids, val_ids = _read_split(split_dir / "train.txt"), _read_split(split_dir / "val.txt")
    notes = []
    if train_ids is None:
        # VOC ships more JPEGs than masks: only images with a mask are segmentation samples.
        stems = sorted(s for s in images if layout == "plain" or s in masks)
        train_ids, val_ids = _split(stems, val_fraction)
        notes.append(f"no split files; deterministic {val_fraction:.0%} hash split")
    elif val_ids is None:
        raise UserError(f"{split_dir / 'train.txt'} exists but {split_dir / 'val.txt'} does not; add it.")

    def pairs(ids: list[str]) -> tuple[Sample, ...]:
        out = []
        for stem in ids:
            if stem not in images:
                raise UserError(f"Image for {stem!r} not found in {img_dir} (listed in a split file).")
            if stem not in masks:
                raise UserError(f"Mask for image {images[stem]} not found: expected {mask_dir / (stem + '.png')}.")
            out.append(Sample(images[stem], masks[stem]))
        return tuple(out)

    train, val = pairs(train_ids), pairs(val_ids)
    if not train:
        raise UserError(f"No training images found in {img_dir}.")
    names = _class_names(root, default_names)
    if names is None:
        raise UserError(f"{root} has no class_names.txt: add one with a class name per line (line 0 = "
                        "background), so masks can be checked and exported files carry the names.")
    return FolderDataset(root, layout, names, train, val, tuple(notes))


def open_dataset(path: str | Path | None, *, progress: bool = True) -> FolderDataset:
    """The user's dataset folder, or (None) the built-in demo set, made once and cached."""
    if path is None:
        from .demo_data import demo_dataset

        return scan_folder(demo_dataset(progress=progress))
    return scan_folder(path)


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array from any image file (EXIF rotation applied); the runtime's loader, one implementation."""
    from deeplab_edge.runtime.images import load_image

    return load_image(path)


def read_mask(path: Path) -> np.ndarray:
    """Class indices from a palette or single-channel PNG (label 255 = ignore)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise UserError(
                    f"Mask {path} has mode {im.mode}; masks must be palette (P) or grayscale (L) PNGs holding "
                    "class indices (255 = ignore). Convert colours to indices first."
                )
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"Cannot read mask {path}: {e}. Replace or remove the file.") from None


def load_arrays(samples, size: tuple[int, int], num_classes: int, *, progress: bool = False, desc: str = "loading"):
    """Decode, check and resize pairs to `size` (image bilinear, mask nearest) -> uint8 arrays; `progress`:
    a counter bar named `desc` (on a terminal, not with -q)."""
    h, w = size
    images = np.zeros((len(samples), h, w, 3), np.uint8)
    masks = np.zeros((len(samples), h, w), np.uint8)
    it = samples
    if progress:
        from deeplab_edge.progress import track

        it = track(samples, desc)
    for i, s in enumerate(it):
        img, mask = load_pair(s, num_classes)
        images[i] = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        masks[i] = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
    return images, masks


def load_pair(sample, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask at their own size, checked: same size, labels < classes (or ignore)."""
    img, mask = read_image(sample.image), read_mask(sample.mask)
    _check_size(sample, img.shape[:2], mask)
    check_labels(mask, sample.mask, num_classes)
    return img, mask


def _check_size(sample: Sample, image_hw: tuple[int, int], mask: np.ndarray) -> None:
    """A UserError naming both files if the image (its (h, w)) and its mask differ in size."""
    if tuple(image_hw) != mask.shape:
        raise UserError(f"Image {sample.image} is {image_hw[1]}x{image_hw[0]} but its mask {sample.mask} is "
                        f"{mask.shape[1]}x{mask.shape[0]}; they must be the same size.")


def check_labels(mask: np.ndarray, path: Path, num_classes: int) -> None:
    """A UserError naming `path` if the mask holds a label >= num_classes other than the ignore label."""
    bad = np.unique(mask[(mask >= num_classes) & (mask != IGNORE_LABEL)])
    if bad.size:
        raise UserError(f"Mask {path} has label(s) {bad.tolist()} but there are {num_classes} classes "
                        f"(valid labels 0..{num_classes - 1}, and {IGNORE_LABEL} = ignore).")


@dataclass(frozen=True)
class DataCheck:
    """What `check_dataset` found: every problem (each names its file), and what the masks hold."""

    root: Path
    images: int
    problems: tuple[str, ...]
    class_pixels: tuple[int, ...]  # labelled pixels per class over all readable masks
    ignore_pixels: int
    sizes: tuple[tuple[int, int], ...]  # distinct (h, w), at most 10
    native: tuple[bool, ...] = ()  # quick check without problems: per pair, image decodable by tf.io as is

    def summary(self, class_names: tuple[str, ...]) -> str:
        total = sum(self.class_pixels) + self.ignore_pixels
        absent = [n for n, c in zip(class_names, self.class_pixels, strict=True) if c == 0]
        lines = [f"{self.root}: {self.images} image/mask pairs checked, {len(self.problems)} problem(s)",
                 f"image sizes: {', '.join(f'{w}x{h}' for h, w in self.sizes)}"
                 + (" (and more)" if len(self.sizes) >= 10 else ""),
                 "class pixels: " + ", ".join(f"{n} {100 * c / max(total, 1):.1f}%"
                                              for n, c in zip(class_names, self.class_pixels, strict=True))
                 + f", ignore {100 * self.ignore_pixels / max(total, 1):.1f}%"]
        if absent:
            lines.append(f"warning: no pixel of {', '.join(absent)} in any mask; those classes cannot be learned "
                         "or scored")
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _image_header(path: Path) -> tuple[tuple[int, int], bool]:
    """(h, w) of an image as `read_image` would return it (EXIF rotation applied), and whether TensorFlow's own
    decoder gives the same pixels (an upright RGB or grayscale JPEG or PNG), from its header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
            native = im.format in ("JPEG", "PNG") and im.mode in ("RGB", "L") and orientation == 1
            return ((w, h) if orientation in (5, 6, 7, 8) else (h, w)), native
    except FileNotFoundError:
        raise UserError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"Cannot read image {path}: {e}. Replace or remove the file.") from None


def _check_pair(sample: Sample, num_classes: int, quick: bool) -> tuple[np.ndarray, tuple[int, int], bool]:
    """The mask's label histogram (256 bins), its shape and whether the image suits TensorFlow's decoder, after
    the checks of `load_pair`; `quick` reads only the image's header (its size), not its pixels."""
    native = False
    if quick:
        mask = read_mask(sample.mask)
        size, native = _image_header(sample.image)
        _check_size(sample, size, mask)
        check_labels(mask, sample.mask, num_classes)
    else:
        _, mask = load_pair(sample, num_classes)
    return np.bincount(mask.ravel(), minlength=256), mask.shape, native


def check_dataset(ds: FolderDataset, *, quick: bool = False, progress: bool = False,
                  samples=None) -> DataCheck:
    """Read every pair of `ds` (or `samples`) and collect every problem (unreadable file, image/mask size
    mismatch, label >= classes, not a palette/grayscale mask) instead of stopping at the first. Threads read
    the files in parallel. `quick` decodes masks but reads only the images' headers: a truncated image is
    then found when training decodes it (the error names it too)."""
    from concurrent.futures import ThreadPoolExecutor

    n = ds.num_classes
    samples = ds.train + ds.val if samples is None else tuple(samples)

    def one(sample):
        try:
            return _check_pair(sample, n, quick)
        except UserError as e:
            return str(e)

    problems: list[str] = []
    native: list[bool] = []
    counts = np.zeros(n, np.int64)
    ignore = 0
    sizes: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        it = pool.map(one, samples, chunksize=16)
        if progress:
            from deeplab_edge.progress import track

            it = track(it, "checking", total=len(samples))
        for r in it:
            if isinstance(r, str):
                problems.append(r)
                continue
            hist, shape, ok = r
            native.append(ok)
            counts += hist[:n]
            ignore += int(hist[IGNORE_LABEL])
            if shape not in sizes and len(sizes) < 10:
                sizes.append(shape)
    return DataCheck(ds.root, len(samples), tuple(problems), tuple(int(c) for c in counts), ignore, tuple(sizes),
                     tuple(native) if quick and not problems else ())


def normalize_np(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB images -> float32 (pixel - mean) / std."""
    return ((images.astype(np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)


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
    from ._keras import tf

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
    from ._keras import tf

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
    from ._keras import tf

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


def denormalize_np(images: np.ndarray, mean, std) -> np.ndarray:
    """The inverse of `normalize_np`: float32 (pixel - mean) / std -> uint8 RGB pixels (exact for images
    that were uint8 before normalising)."""
    pixels = np.rint(images.astype(np.float64) * np.asarray(std, np.float64) + np.asarray(mean, np.float64))
    return np.clip(pixels, 0, 255).astype(np.uint8)
