"""Folder datasets (PASCAL VOC layout, or images/ + masks/): finding the pairs, opening and reading them.

Label 255 means "ignore" everywhere: in the loss, the metrics and the padding of augmented crops.
"""

from __future__ import annotations

import hashlib
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
    check_size(sample, img.shape[:2], mask)
    check_labels(mask, sample.mask, num_classes)
    return img, mask


def check_size(sample: Sample, image_hw: tuple[int, int], mask: np.ndarray) -> None:
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
