"""Checking a folder dataset: every pair read, every problem collected and named by its file.

`check_dataset` is what `deeplab-edge data check` shows; `quick_scan` is the check training runs first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deeplab_edge.errors import UserError

from .data import IGNORE_LABEL, FolderDataset, Sample, check_labels, check_size, load_pair, read_mask


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
        check_size(sample, size, mask)
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


def problems_error(dataset: FolderDataset, report: DataCheck) -> UserError:
    """One UserError listing a report's problems (the first 10), each naming its file."""
    shown = "\n  ".join(report.problems[:10])
    more = f"\n  ... and {len(report.problems) - 10} more" if len(report.problems) > 10 else ""
    return UserError(f"{len(report.problems)} problem(s) in {dataset.root} (of {report.images} pairs):\n  {shown}"
                     f"{more}\nFix or remove these files; `deeplab-edge data check {dataset.root}` lists them all.")


def quick_scan(dataset: FolderDataset, samples, *, verbose: int = 1) -> tuple[bool, ...]:
    """Before training: every mask decoded and every image's header read (`check_dataset(quick=True)`); a
    UserError lists the problems, each naming its file. Returns, per sample, whether tf.io can decode it."""
    t0 = time.perf_counter()
    report = check_dataset(dataset, quick=True, samples=samples)
    if report.problems:
        raise problems_error(dataset, report)
    if verbose:
        print(f"data scan: {report.images} pairs OK in {time.perf_counter() - t0:.1f} s "
              f"({sum(report.native)} images decoded by tf.io, the rest by Pillow)", flush=True)
    return report.native


def require_batch(n_train: int, batch_size: int) -> None:
    """A UserError when the training set is smaller than one batch."""
    if n_train < batch_size:
        raise UserError(f"{n_train} training images is fewer than the batch size {batch_size}; "
                        "lower `batch_size` or add images.")

