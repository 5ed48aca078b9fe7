"""One calibration source feeds both TFLite's representative dataset and onnxruntime's reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplab_edge.errors import UserError

DEFAULT_CALIBRATION_COUNT = 200


@dataclass(frozen=True)
class Calibration:
    """NHWC images at the model's input size (real training images): normalised float32, or uint8 pixels
    for files that normalise their input themselves."""

    images: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or len(self.images) == 0:
            raise UserError(f"Calibration needs a non-empty (N, H, W, 3) batch; received shape "
                            f"{self.images.shape} from {self.source}.")

    def __len__(self) -> int:
        return len(self.images)

    def representative_dataset(self) -> Iterator[list[np.ndarray]]:
        """For `TFLiteConverter.representative_dataset`: one image per step, batch 1."""
        for img in self.images:
            yield [img[None].astype(np.float32)]

    def ort_reader(self, input_name: str) -> _OrtReader:
        return _OrtReader(self.images, input_name)


class _OrtReader:
    """onnxruntime.quantization CalibrationDataReader protocol: get_next() -> dict | None."""

    def __init__(self, images: np.ndarray, input_name: str):
        self._images = images
        self._name = input_name
        self._i = 0

    def get_next(self) -> dict | None:
        if self._i >= len(self._images):
            return None
        self._i += 1
        image = self._images[self._i - 1][None]  # uint8 pixels stay uint8 (the input's type)
        return {self._name: image if image.dtype == np.uint8 else image.astype(np.float32)}

    def rewind(self) -> None:
        self._i = 0


def calibration_from_dataset(dataset, size: tuple[int, int], count: int, *, seed: int = 0,
                             mean=None, std=None) -> Calibration:
    """`count` training images of a FolderDataset, chosen with `seed`, resized and normalised
    as (pixel - mean) / std, the model's own normalisation (None: the project's)."""
    from deeplab_edge.model.data import load_arrays, normalize_np
    from deeplab_edge.model.presets import DEFAULT_MEAN, DEFAULT_STD

    mean, std = (DEFAULT_MEAN, DEFAULT_STD) if mean is None else (mean, std)

    if count <= 0:
        raise UserError(f"The calibration count must be positive; received {count}.")
    available = len(dataset.train)
    if available == 0:
        raise UserError(f"The calibration set is empty: {dataset.root} has no training images. "
                        "Int8 export needs real images; pass --data with a folder of them.")
    if available < count:
        raise UserError(f"Asked for {count} calibration images but {dataset.root} has only {available} "
                        f"training images. Pass --calibration-images {available} or fewer, or add images.")
    idx = np.random.default_rng(seed).choice(available, size=count, replace=False)
    samples = [dataset.train[i] for i in sorted(idx)]
    images, _ = load_arrays(samples, size, dataset.num_classes, progress=True, desc="calibration images")
    return Calibration(normalize_np(images, mean, std), f"{count} training images of {dataset.root}")


def calibration_from_folder(folder, size: tuple[int, int], count: int | None, *, mean, std, seed: int = 0,
                            progress=print) -> Calibration:
    """Calibration from a folder of images alone (no masks): `count` of them (None: min(200, available),
    with a note when fewer), chosen with `seed`, resized as training resizes (Pillow bilinear) and
    normalised as (pixel - mean) / std."""
    from PIL import Image

    from deeplab_edge.model.data import normalize_np
    from deeplab_edge.runtime.images import iter_images, load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--calibration-data {folder} is not a folder; pass a folder of images (no masks needed).")
    paths = iter_images([folder])
    if not paths:
        raise UserError(f"--calibration-data {folder} holds no images (.jpg, .png, ...); add some real images.")
    if count is not None and count <= 0:
        raise UserError(f"The calibration count must be positive; received {count}.")
    wanted = min(DEFAULT_CALIBRATION_COUNT, len(paths)) if count is None else count
    if wanted > len(paths):
        raise UserError(f"Asked for {count} calibration images but {folder} holds {len(paths)}; pass "
                        f"--calibration-images {len(paths)} or fewer, or add images.")
    if count is None and wanted < DEFAULT_CALIBRATION_COUNT:
        progress(f"note: {folder} holds {len(paths)} images; calibrating int8 on all of them "
                 f"(default {DEFAULT_CALIBRATION_COUNT})")
    idx = sorted(np.random.default_rng(seed).choice(len(paths), size=wanted, replace=False))
    h, w = size
    from deeplab_edge.progress import track

    images = np.stack([np.asarray(Image.fromarray(load_image(paths[i])).resize((w, h), Image.BILINEAR))
                       for i in track(idx, "calibration images")])
    return Calibration(normalize_np(images, mean, std), f"{wanted} unlabeled images of {folder}")


def calibration_and_verification(ds, size, formats, calibration_count: int | None, verify_count: int,
                                 mean=None, std=None, progress=print, calibration_data=None):
    """Calibration images (when a format needs them) and held-out verification images, normalised as
    the model expects (mean/std None: the project's own normalisation). `calibration_count` None =
    min(200, training images), with a note when fewer. `calibration_data`: a folder of unlabeled images
    to calibrate on instead of the training images."""
    from deeplab_edge.model.data import load_arrays, normalize_np
    from deeplab_edge.model.presets import DEFAULT_MEAN, DEFAULT_STD

    mean, std = (DEFAULT_MEAN, DEFAULT_STD) if mean is None else (mean, std)

    calibration = None
    if calibration_data is not None and any(f.needs_calibration for f in formats):
        calibration = calibration_from_folder(calibration_data, size, calibration_count, mean=mean, std=std,
                                              progress=progress)
    elif any(f.needs_calibration for f in formats):
        count = calibration_count
        if count is None:
            count = min(DEFAULT_CALIBRATION_COUNT, len(ds.train))
            if count < DEFAULT_CALIBRATION_COUNT:
                progress(f"note: {ds.root} has {len(ds.train)} training images; calibrating int8 on all of them "
                         f"(default {DEFAULT_CALIBRATION_COUNT})")
        calibration = calibration_from_dataset(ds, size, count, mean=mean, std=std)
    held_out = ds.val[:verify_count]
    if not held_out:
        raise UserError(f"{ds.root} has no validation images to verify exported files on; add a val split.")
    vx, vy = load_arrays(held_out, size, ds.num_classes, progress=True, desc="verification images")
    return calibration, normalize_np(vx, mean, std), vy
