"""What a benchmark scores and times on: validation images with masks, and one photo for pre/post timing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeplab_edge.errors import UserError


@dataclass(frozen=True)
class EvalSet:
    """Validation images (RGB uint8, all one size) with their masks, for the rows that can be scored."""

    images: np.ndarray
    masks: np.ndarray
    num_classes: int
    note: str = ""
    class_names: tuple[str, ...] = ()


def load_eval(ds, size: tuple[int, int], count: int):
    """Validation images of `ds` as RGB uint8 at `size`, their masks, and one real photo for pre/post timing."""
    from deeplab_edge.model.data import load_arrays, read_image

    if not ds.val:
        raise UserError(f"{ds.root} has no validation images to evaluate on.")
    images, masks = load_arrays(ds.val[:count], size, ds.num_classes)
    photos = sorted((ds.root / "photos").glob("*.jpg")) if (ds.root / "photos").is_dir() else []
    photo = read_image(photos[0] if photos else ds.val[0].image)
    return images, masks, photo


def synthetic_photo(h: int = 480, w: int = 640):
    """A deterministic 480x640 RGB image (smooth gradients plus noise) for pre/post timing without data."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
