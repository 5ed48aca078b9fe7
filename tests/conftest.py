"""Shared fixtures: tiny models and datasets, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TINY_NORM = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))  # the tiny models' mean, std (pixels)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def synthetic():
    """(train_x, train_y, val_x, val_y) uint8 arrays of the 4-class synthetic set at 64 px."""
    from deeplab_edge.model.demo_data import synthetic_arrays

    x, y = synthetic_arrays(96, 64, seed=1)
    return x[:80], y[:80], x[80:], y[80:]


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory, synthetic):
    from deeplab_edge.model.demo_data import write_folder

    tx, ty, vx, vy = synthetic
    root = tmp_path_factory.mktemp("synthetic") / "voc"
    return write_folder(np.concatenate([vx, tx]), np.concatenate([vy, ty]), root, layout="voc", val_count=len(vx))


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, synthetic, synthetic_folder):
    """A tiny DeepLabV3+ trained for a few epochs on the synthetic set: (run_dir, TrainResult)."""
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.train import TrainSettings, train

    ds = scan_folder(synthetic_folder)
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = get_preset("tiny").config.replace(num_classes=ds.num_classes)
    result = train(cfg, ds, out, TrainSettings(epochs=6, batch_size=16, learning_rate=5e-3, verbose=0,
                                                             bn_recalibration_steps=5),
                   preset="tiny")  # streamed from the folder, as users train
    return Path(out), result


@pytest.fixture(scope="session")
def exported(trained_tiny, synthetic_folder, tmp_path_factory):
    """All six formats of the trained tiny model, written by the Python export entry point
    (`export_checkpoint`, what `deeplab-edge export` calls): (ExportReport, model, info, verify_x, verify_y)."""
    from deeplab_edge.export import export_checkpoint
    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import scan_folder

    run_dir, _ = trained_tiny
    out = tmp_path_factory.mktemp("exported")
    report = export_checkpoint(run_dir / "best.keras", out, name="tiny", data=synthetic_folder, eval_images=16,
                               calibration_count=32, progress=lambda m: None)
    model, info = load_checkpoint(run_dir / "best.keras")
    _, vx, vy = calibration_and_verification(scan_folder(synthetic_folder), (64, 64), [], None, 16, *TINY_NORM)
    return report, model, info, vx, vy


@pytest.fixture(scope="session")
def binary_folder(tmp_path_factory, synthetic):
    """The synthetic set as foreground/background, VOC layout."""
    from deeplab_edge.model.demo_data import write_folder

    tx, ty, vx, vy = synthetic
    x = np.concatenate([vx, tx])
    y = (np.concatenate([vy, ty]) > 0).astype(np.uint8)
    root = tmp_path_factory.mktemp("binary") / "voc"
    return write_folder(x, y, root, class_names=("background", "object"), val_count=len(vx))
