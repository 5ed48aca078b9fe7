"""Load any photo as RGB uint8, or say clearly why not.

- Grayscale, 1-bit, CMYK and palette images are converted to RGB.
- Alpha is dropped (RGBA -> RGB keeps the colour under a transparent pixel, as segmentation tools do);
  a palette with a transparent index is expanded to RGBA first, then its alpha dropped.
- 16-bit images (I;16, and 32-bit I with values above 255) are scaled to 8 bits (value / 257).
- The EXIF orientation is applied, so the mask matches the photo as viewers show it.
- Images under `MIN_SIDE` pixels on a side are refused, and so is anything over `MAX_PIXELS` pixels,
  checked from the header before decoding (a decompression-bomb guard).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deeplab_edge.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                            ".pbm", ".pnm", ".jfif"})
MIN_SIDE = 8
MAX_PIXELS = 100_000_000  # 100 MP, e.g. 12000 x 8000

_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError,
                  ZeroDivisionError, MemoryError, Image.DecompressionBombError)


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read `path` as an (H, W, 3) uint8 RGB array, upright per its EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Image {path} does not exist.")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not an image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UserError(_too_big(path, w, h, max_pixels))
                im.load()
                im = ImageOps.exif_transpose(im) or im
                arr = to_rgb_array(im)
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image Pillow can read; use JPEG, PNG, BMP, TIFF or WebP.") from None
    except Image.DecompressionBombError:
        raise UserError(_too_big(path, None, None, max_pixels)) from None
    except _DECODE_ERRORS as e:
        raise UserError(f"Cannot read image {path}: {e or type(e).__name__}. Is it truncated or corrupt?") from None
    if min(arr.shape[:2]) < min_side:
        raise UserError(f"Image {path} is {arr.shape[1]}x{arr.shape[0]} pixels; images need at least "
                        f"{min_side} pixels on each side.")
    return arr


def _too_big(path: Path, w: int | None, h: int | None, max_pixels: int) -> str:
    size = f"{w}x{h} pixels ({w * h / 1e6:.0f} MP)" if w and h else "far too large"
    return (f"Image {path} is {size}, over the limit of {max_pixels / 1e6:.0f} MP that guards against "
            "decompression bombs; downscale it first.")


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image in any mode -> (H, W, 3) uint8 RGB (see the module docstring)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        g = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        g = np.clip(np.round(np.asarray(im)), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("P", "PA") and ("transparency" in im.info or mode == "PA"):
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def iter_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus the image files (by suffix, sorted, not hidden) of named folders."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise UserError(f"Folder {p} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"Input {p} does not exist; pass image files or folders of images.")
    if not out:
        raise UserError("No input images given; pass image files or folders of images.")
    return list(dict.fromkeys(out))
