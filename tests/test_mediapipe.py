"""The phone client: MediaPipe Tasks' ImageSegmenter (PyPI mediapipe 0.10.14, the C++ graph Android and
iOS run) loads our exported .tflite files, reads their class names and normalisation from the standard
metadata, and segments as our runtime does. Slow: it builds MediaPipe's own venv (numpy<2, protobuf<5)
once, under ~/.cache/deeplab-edge/mediapipe-venv (or $DEEPLAB_EDGE_MEDIAPIPE_VENV)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402
from conftest import TINY_NORM

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).parent / "mediapipe_client.py"
PACKAGES = ["numpy<2", "protobuf>=4.25.3,<5", "absl-py", "attrs", "flatbuffers", "opencv-python-headless<4.11",
            "matplotlib", "pillow"]


@pytest.fixture(scope="module")
def mediapipe_python() -> Path:
    venv = Path(os.environ.get("DEEPLAB_EDGE_MEDIAPIPE_VENV",
                               Path.home() / ".cache" / "deeplab-edge" / "mediapipe-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "mediapipe==0.10.14"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def mask_agreement(pred, image: Path, out: Path) -> float:
    """Fraction of pixels where our runtime's mask equals MediaPipe's category mask for `image`."""
    ours = pred.predict([np.asarray(Image.open(image).convert("RGB"))])[0]
    return float(np.mean(ours == np.load(out / f"{image.stem}.npy")))


def pixel_weighted(agreements: list[float], images: list[Path]) -> float:
    sizes = [Image.open(p).size[0] * Image.open(p).size[1] for p in images]
    return float(np.average(agreements, weights=sizes))


def segment(python: Path, model: Path, images: list[Path], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(CLIENT), str(model), str(out), *map(str, images)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def int8_io(trained_tiny, synthetic_folder, tmp_path_factory) -> Path:
    """The trained tiny model as full-int8 TFLite with int8 input/output (not our default: MediaPipe
    refuses int8 inputs)."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.options import ExportOptions
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import scan_folder

    run_dir, _ = trained_tiny
    model, info = load_checkpoint(run_dir / "best.keras")
    formats = resolve_formats(["tflite_int8"])
    calib, vx, vy = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), formats, 32, 16, *TINY_NORM)
    out = tmp_path_factory.mktemp("int8_io")
    report = export_all(model, info, out, name="tiny", formats=["tflite_int8"], options=ExportOptions(io_type="int8"),
                        calibration=calib, verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        checkpoint=run_dir / "best.keras")
    return report.files[0].path


def test_mediapipe_image_segmenter_runs_our_files(mediapipe_python, exported, int8_io, synthetic_folder,
                                                  tmp_path):
    from deeplab_edge.runtime import load_predictor

    files = {f.format: f.path for f in exported[0].files}
    at_size = sorted((synthetic_folder / "JPEGImages").glob("*.png"))[:16]  # 64x64: the model's input size
    photos = []
    for name, img in rm.photos().items():
        photos.append(tmp_path / f"{name}.png")
        Image.fromarray(img).save(photos[-1])
    results = {}
    for fmt, path in [("tflite_fp32", files["tflite_fp32"]), ("tflite_fp16", files["tflite_fp16"]),
                      ("tflite_dynamic", files["tflite_dynamic"]), ("tflite_int8", files["tflite_int8"])]:
        out = tmp_path / fmt.replace(" ", "_")
        proc = segment(mediapipe_python, path, at_size + photos, out)
        assert proc.returncode == 0, (fmt, proc.stderr[-2000:])
        assert json.loads((out / "labels.json").read_text()) == list(exported[2].class_names), fmt
        ours = {mode: load_predictor(path, resample=mode) for mode in ("pillow", "mediapipe")}
        agree = {mode: [mask_agreement(pred, p, out) for p in images] for mode, pred in ours.items()
                 for images in [at_size + photos]}
        same = agree["pillow"][:len(at_size)]
        mp_photos = agree["mediapipe"][len(at_size):]
        results[fmt] = {"at_input_size_min": min(same), "photos_default": agree["pillow"][len(at_size):],
                        "photos_resample_mediapipe": mp_photos,
                        "photos_resample_mediapipe_pixels": pixel_weighted(mp_photos, photos),
                        "mediapipe_ms_median": float(np.median(json.loads((out / "timing.json").read_text())["ms"]))}
        # At the model's input size nothing is resampled: MediaPipe and our runtime give the same masks.
        # Dynamic-range files run hybrid kernels that quantise activations on the fly; MediaPipe
        # 0.10.14 bundles an older TFLite whose hybrid kernels round differently (measured 98.3-99.9%).
        floor = 0.98 if fmt == "tflite_dynamic" else 0.999
        assert min(same) > floor, (fmt, same)
        # Larger photos, resampled as MediaPipe does (--resample mediapipe): >= 99% of all pixels.
        assert results[fmt]["photos_resample_mediapipe_pixels"] >= (0.98 if fmt == "tflite_dynamic" else 0.99), \
            (fmt, results[fmt])
        assert min(mp_photos) > 0.95, (fmt, mp_photos)
    print(json.dumps(results, indent=1))

    # Integer input: MediaPipe refuses it with an error naming the type (float32/uint8 only), not a crash.
    proc = segment(mediapipe_python, int8_io, at_size[:1], tmp_path / "int8io")
    assert proc.returncode == 1 and "INT8" in proc.stderr


def test_mediapipe_runs_pixel_input_files_with_logits_at_stride(mediapipe_python, exported, synthetic_folder,
                                                                 tmp_path):
    """Files that take uint8 pixels and output logits at stride 4: MediaPipe feeds the pixels as they are
    and upsamples the scores itself; our runtime in --resample mediapipe mode gives the same masks."""
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.runtime import load_predictor

    _, model, info, vx, vy = exported
    formats = ["tflite_fp32", "tflite_int8"]
    calib, _, _ = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), resolve_formats(formats),
                                               32, 16, *TINY_NORM)
    report = export_all(model, info, tmp_path / "files", name="ps", formats=formats, calibration=calib,
                        verify_images=vx, verify_masks=vy, progress=lambda m: None, pixel_input=True,
                        logits_at="stride")
    photos = []
    for name, img in rm.photos().items():
        photos.append(tmp_path / f"{name}.png")
        Image.fromarray(img).save(photos[-1])
    for f in report.files:
        out = tmp_path / f.format
        proc = segment(mediapipe_python, f.path, photos, out)
        assert proc.returncode == 0, (f.format, proc.stderr[-2000:])
        pred = load_predictor(f.path, resample="mediapipe")
        agree = [mask_agreement(pred, p, out) for p in photos]
        print(f.format, agree)
        assert pixel_weighted(agree, photos) >= 0.99, (f.format, agree)
