"""One calibration source feeds both TFLite's representative dataset and onnxruntime's reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError
from deeplab_edge.runtime.kernels import normalise

DEFAULT_CALIBRATION_COUNT = 200


@dataclass(frozen=True)
class Calibration:
    """Real images at the model's input size as uint8 pixels, and the normalisation of the model they
    calibrate. `inputs()` is what the file being calibrated takes: the pixels normalised, or as float32
    pixels when the file normalises its input itself (`for_pixel_input()`)."""

    pixels: np.ndarray  # (N, H, W, 3) uint8
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    takes_pixels: bool = False

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4 or self.pixels.shape[-1] != 3 or len(self.pixels) == 0:
            raise UserError(f"Calibration needs a non-empty (N, H, W, 3) batch; received shape "
                            f"{self.pixels.shape} from {self.source}.")
        if self.pixels.dtype != np.uint8:
            raise UserError(f"Calibration images are uint8 pixels; received {self.pixels.dtype} from {self.source}.")

    def __len__(self) -> int:
        return len(self.pixels)

    def for_pixel_input(self) -> Calibration:
        """The same images for a file that takes pixels (0..255 as float32) and normalises them itself."""
        return replace(self, takes_pixels=True)

    def subset(self, count: int, source: str | None = None) -> Calibration:
        """The first `count` images."""
        return replace(self, pixels=self.pixels[:count], source=source or self.source)

    def _input(self, pixels: np.ndarray) -> np.ndarray:
        if self.takes_pixels:
            return pixels.astype(np.float32)
        return normalise(pixels, self.mean, self.std)

    def inputs(self, count: int | None = None) -> np.ndarray:
        """The first `count` images (None: all) as the file takes them, float32 NHWC."""
        return self._input(self.pixels[:count])

    def representative_dataset(self) -> Iterator[list[np.ndarray]]:
        """For `TFLiteConverter.representative_dataset`: one image per step, batch 1."""
        for img in self.pixels:
            yield [self._input(img[None])]

    def ort_reader(self, input_name: str) -> _OrtReader:
        return _OrtReader(self, input_name)


class _OrtReader:
    """onnxruntime.quantization CalibrationDataReader protocol: get_next() -> dict | None."""

    def __init__(self, calibration: Calibration, input_name: str):
        self._calibration = calibration
        self._name = input_name
        self._i = 0

    def get_next(self) -> dict | None:
        if self._i >= len(self._calibration):
            return None
        self._i += 1
        c = self._calibration
        return {self._name: c._input(c.pixels[self._i - 1:self._i])}

    def rewind(self) -> None:
        self._i = 0


def calibration_from_dataset(dataset, size: tuple[int, int], count: int, *, mean, std,
                             seed: int = 0) -> Calibration:
    """`count` training images of a FolderDataset, chosen with `seed`, resized as training resizes, for a
    model normalised with `mean`/`std`."""
    from deeplab_edge.model.data import load_arrays

    if count <= 0:
        raise UserError(f"The calibration count must be positive; received {count}.")
    available = len(dataset.train)
    if available == 0:
        raise UserError(f"The calibration set is empty: {dataset.root} has no training images. "
                        "Int8 export needs real images; pass `data` with a folder of them.")
    if available < count:
        raise UserError(f"Asked for {count} calibration images but {dataset.root} has only {available} "
                        f"training images. Pass `calibration_count` {available} or fewer, or add images.")
    idx = np.random.default_rng(seed).choice(available, size=count, replace=False)
    samples = [dataset.train[i] for i in sorted(idx)]
    images, _ = load_arrays(samples, size, dataset.num_classes, progress=True, desc="calibration images")
    return Calibration(images, f"{count} training images of {dataset.root}", tuple(mean), tuple(std))


def calibration_from_folder(folder, size: tuple[int, int], count: int | None, *, mean, std, seed: int = 0,
                            note=print) -> Calibration:
    """Calibration from a folder of images alone (no masks): `count` of them (None: min(200, available),
    with a note when fewer), chosen with `seed`, resized as training resizes (Pillow bilinear) and
    calibrates a model normalised with `mean`/`std`."""
    from PIL import Image

    from deeplab_edge.runtime.images import iter_images, load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"`calibration_data` {folder} is not a folder; pass a folder of images (no masks needed).")
    paths = iter_images([folder])
    if not paths:
        raise UserError(f"`calibration_data` {folder} holds no images (.jpg, .png, ...); add some real images.")
    if count is not None and count <= 0:
        raise UserError(f"The calibration count must be positive; received {count}.")
    wanted = min(DEFAULT_CALIBRATION_COUNT, len(paths)) if count is None else count
    if wanted > len(paths):
        raise UserError(f"Asked for {count} calibration images but {folder} holds {len(paths)}; pass "
                        f"`calibration_count` {len(paths)} or fewer, or add images.")
    if count is None and wanted < DEFAULT_CALIBRATION_COUNT:
        note(f"note: {folder} holds {len(paths)} images; calibrating int8 on all of them "
                 f"(default {DEFAULT_CALIBRATION_COUNT})")
    idx = sorted(np.random.default_rng(seed).choice(len(paths), size=wanted, replace=False))
    h, w = size
    from deeplab_edge.progress import track

    images = np.stack([np.asarray(Image.fromarray(load_image(paths[i])).resize((w, h), Image.BILINEAR))
                       for i in track(idx, "calibration images")])
    return Calibration(images, f"{wanted} unlabeled images of {folder}", tuple(mean), tuple(std))


def calibration_and_verification(ds, size, formats, calibration_count: int | None, verify_count: int,
                                 mean, std, note=print, calibration_data=None):
    """(calibration or None, held-out pixels, their masks): the calibration images when a format needs
    them, for a model normalised with `mean`/`std`, and the held-out verification images, all uint8 pixels.
    `calibration_count` None = min(200, training images), with a note when fewer. `calibration_data`: a
    folder of unlabeled images to calibrate on instead of the training images."""
    from deeplab_edge.model.data import load_arrays

    calibration = None
    if calibration_data is not None and any(f.needs_calibration for f in formats):
        calibration = calibration_from_folder(calibration_data, size, calibration_count, mean=mean, std=std,
                                              note=note)
    elif any(f.needs_calibration for f in formats):
        count = calibration_count
        if count is None:
            count = min(DEFAULT_CALIBRATION_COUNT, len(ds.train))
            if count < DEFAULT_CALIBRATION_COUNT:
                note(f"note: {ds.root} has {len(ds.train)} training images; calibrating int8 on all of them "
                         f"(default {DEFAULT_CALIBRATION_COUNT})")
        calibration = calibration_from_dataset(ds, size, count, mean=mean, std=std)
    held_out = ds.val[:verify_count]
    if not held_out:
        raise UserError(f"{ds.root} has no validation images to verify exported files on; add a val split.")
    vx, vy = load_arrays(held_out, size, ds.num_classes, progress=True, desc="verification images")
    return calibration, vx, vy
