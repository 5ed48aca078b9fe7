"""Run MediaPipe Tasks' ImageSegmenter (the phone client) on a .tflite file, in MediaPipe's own venv.

Usage: python mediapipe_client.py MODEL.tflite OUT_DIR IMAGE [IMAGE ...]
Writes OUT_DIR/<image stem>.npy (the category mask, uint8, image size), OUT_DIR/labels.json (the
labels MediaPipe read from the file) and OUT_DIR/timing.json (per-image milliseconds). This script
imports mediapipe, numpy and Pillow only: MediaPipe pins numpy<2 and protobuf<5, so it cannot share
the project's venv.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from mediapipe import Image as MpImage
from mediapipe import ImageFormat
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ImageSegmenter, ImageSegmenterOptions
from PIL import Image


def main(argv: list[str]) -> int:
    model, out, images = Path(argv[0]), Path(argv[1]), [Path(p) for p in argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    options = ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        output_category_mask=True,
        output_confidence_masks=False,
    )
    timings = []
    with ImageSegmenter.create_from_options(options) as segmenter:
        (out / "labels.json").write_text(json.dumps(list(segmenter.labels)))
        for path in images:
            rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
            image = MpImage(image_format=ImageFormat.SRGB, data=rgb)
            start = time.perf_counter()
            result = segmenter.segment(image)
            timings.append((time.perf_counter() - start) * 1000)
            np.save(out / f"{path.stem}.npy", np.asarray(result.category_mask.numpy_view()).copy())
    (out / "timing.json").write_text(json.dumps({"ms": timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
