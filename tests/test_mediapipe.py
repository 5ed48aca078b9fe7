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


def segment(python: Path, model: Path, images: list[Path], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(CLIENT), str(model), str(out), *map(str, images)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def int8_float_io(trained_tiny, synthetic_folder, tmp_path_factory) -> Path:
    """The trained tiny model as full-int8 TFLite with float32 input/output (what MediaPipe accepts)."""
    from deeplab_edge.commands.export_common import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import scan_folder

    run_dir, _ = trained_tiny
    model, info = load_checkpoint(run_dir / "best.keras")
    formats = resolve_formats(["tflite_int8"])
    calib, vx, vy = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), formats, 32, 16)
    out = tmp_path_factory.mktemp("int8_float_io")
    report = export_all(model, info, out, name="tiny", formats=["tflite_int8"], options={"io_type": "float32"},
                        calibration=calib, verify_images=vx, verify_masks=vy, progress=lambda m: None,
                        checkpoint=run_dir / "best.keras")
    return report.files[0].path


def test_mediapipe_image_segmenter_runs_our_files(mediapipe_python, exported, int8_float_io, synthetic_folder,
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
                      ("tflite_dynamic", files["tflite_dynamic"]), ("tflite_int8 (float io)", int8_float_io)]:
        out = tmp_path / fmt.replace(" ", "_")
        proc = segment(mediapipe_python, path, at_size + photos, out)
        assert proc.returncode == 0, (fmt, proc.stderr[-2000:])
        assert json.loads((out / "labels.json").read_text()) == list(exported[2].class_names), fmt
        pred = load_predictor(path)
        same = [np.mean(pred.predict([np.asarray(Image.open(p).convert("RGB"))])[0] == np.load(out / f"{p.stem}.npy"))
                for p in at_size]
        other = [np.mean(pred.predict([np.asarray(Image.open(p).convert("RGB"))])[0] == np.load(out / f"{p.stem}.npy"))
                 for p in photos]
        results[fmt] = {"at_input_size": float(np.mean(same)), "photos": float(np.mean(other)),
                        "mediapipe_ms_median": float(np.median(json.loads((out / "timing.json").read_text())["ms"]))}
        # At the model's input size nothing is resampled: MediaPipe and our runtime must give the same masks.
        assert min(same) > 0.999, (fmt, same)
        # Larger photos: MediaPipe resamples differently (see README); the masks still mostly agree.
        assert np.mean(other) > 0.7, (fmt, other)
    print(json.dumps(results, indent=1))

    # Integer input: MediaPipe refuses it with an error naming the type (float32/uint8 only), not a crash.
    proc = segment(mediapipe_python, files["tflite_int8"], at_size[:1], tmp_path / "int8io")
    assert proc.returncode == 1 and "INT8" in proc.stderr
