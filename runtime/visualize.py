"""Masks as palette PNGs (PASCAL VOC colours) and overlays on the photo with a legend of the classes present."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), 256 RGB entries flattened (also the demo dataset's mask palette)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


PALETTE = voc_palette()
_COLOURS = np.asarray(PALETTE, np.uint8).reshape(256, 3)


def mask_image(mask: np.ndarray) -> Image.Image:
    """A label map as a palette ("P") image; labels over 255 (more than 256 classes) as 16-bit grey."""
    if mask.max(initial=0) > 255:
        return Image.fromarray(mask.astype(np.uint16))
    im = Image.fromarray(mask.astype(np.uint8))
    im.putpalette(PALETTE)  # an "L" image with a palette becomes "P"
    return im


def colorize(mask: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 VOC colours (labels wrap at 256)."""
    mask = np.asarray(mask)
    return _COLOURS[mask if mask.dtype == np.uint8 else mask.astype(np.int64) % 256]


def class_name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else f"class_{label}"


def overlay_image(image: np.ndarray, mask: np.ndarray, class_names: Sequence[str] = (), *, alpha: float = 0.5,
                  legend: bool = True) -> Image.Image:
    """The mask's colours blended over the photo (label 0 left as is), with a legend of the classes present."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ")
    colours = colorize(mask).astype(np.float32)
    out = image.astype(np.float32)
    fg = mask != 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    im = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
    if legend:
        present = [int(v) for v in np.unique(mask)]
        _draw_legend(im, [(class_name(class_names, v), tuple(int(c) for c in _COLOURS[v % 256])) for v in present])
    return im


def _draw_legend(im: Image.Image, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    """Colour swatches and names in a translucent box at the top left (clipped on small images)."""
    if not entries:
        return
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(im, "RGBA")
    pad, sw = 4, 10
    heights = [draw.textbbox((0, 0), name, font=font)[3] for name, _ in entries]
    line = max(max(heights), sw) + 2
    width = max(draw.textlength(name, font=font) for name, _ in entries) + sw + 3 * pad
    draw.rectangle([0, 0, width, len(entries) * line + 2 * pad], fill=(0, 0, 0, 150))
    for i, (name, colour) in enumerate(entries):
        y = pad + i * line
        draw.rectangle([pad, y + 1, pad + sw, y + 1 + sw], fill=(*colour, 255), outline=(255, 255, 255, 255))
        draw.text((2 * pad + sw, y), name, fill=(255, 255, 255, 255), font=font)
