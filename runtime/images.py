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

import os
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deeplab_edge.errors import ImageError, UserError

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
        raise ImageError(f"Image {path} does not exist.")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(_too_big(path, w, h, max_pixels))
                im.load()
                im = ImageOps.exif_transpose(im) or im
                arr = to_rgb_array(im)
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read; use JPEG, PNG, BMP, TIFF or WebP.") from None
    except Image.DecompressionBombError:
        raise ImageError(_too_big(path, None, None, max_pixels)) from None
    except _DECODE_ERRORS as e:
        raise ImageError(f"Cannot read image {path}: {e or type(e).__name__}. Is it truncated or corrupt?") from None
    if min(arr.shape[:2]) < min_side:
        raise ImageError(f"Image {path} is {arr.shape[1]}x{arr.shape[0]} pixels; images need at least "
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


@dataclass(frozen=True)
class Skipped:
    """An input that was given (or found in a given folder) and is not processed, with the reason."""

    path: Path
    reason: str
    failure: bool = False  # True: it looked like an image and cannot be read (a broken link); counts as failed


def scan_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Files named directly, plus the image files (by suffix, sorted) of named folders; and every entry of a
    named folder that is not taken, with the reason (hidden, not an image by suffix, a subfolder, a broken
    link). A named path that does not exist is an error."""
    out: list[Path] = []
    skipped: list[Skipped] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.iterdir()):
                reason = _not_taken(f)
                if reason is None:
                    out.append(f)
                else:
                    skipped.append(Skipped(f, f"{f}: {reason[0]}", reason[1]))
            if not any(q.parent == p for q in out) and not any(s.failure and s.path.parent == p for s in skipped):
                raise UserError(f"Folder {p} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        elif p.is_symlink() and not p.exists():
            raise UserError(f"Input {p} is a broken symbolic link (to {os.readlink(p)}); fix or remove it.")
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"Input {p} does not exist; pass image files or folders of images.")
    if not out and not skipped:
        raise UserError("No input images given; pass image files or folders of images.")
    return list(dict.fromkeys(out)), skipped


def _not_taken(f: Path) -> tuple[str, bool] | None:
    """Why a folder entry is not an input (reason, counts as a failure), or None when it is one."""
    image = f.suffix.lower() in IMAGE_SUFFIXES
    if f.name.startswith("."):
        return "a hidden file, skipped", False
    if f.is_symlink() and not f.exists():
        return f"a broken symbolic link (to {os.readlink(f)})", image
    if f.is_dir():
        return "a folder: folders are not searched recursively; pass it as an input too", False
    if not image:
        return (f"not an image by its suffix ({f.suffix or 'none'}); images are {', '.join(sorted(IMAGE_SUFFIXES))}",
                False)
    if not f.is_file():
        return "not a regular file (a device, socket or pipe)", True
    return None


def iter_images(paths: Iterable[str | Path]) -> list[Path]:
    """The image files of `scan_images` (what it skips is not reported: use `scan_images` for that)."""
    return scan_images(paths)[0]
