"""Saving and safely loading checkpoints, with the model info that travels inside and beside them.

The info (config, class names, normalisation) is written into every `.keras` file as a zip member
(`deeplab_edge/model_info.json`; Keras ignores it) and as `model_info.json` beside it, so a checkpoint
moved on its own still exports with its class names. The member wins when both exist."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from deeplab_edge import __version__
from deeplab_edge.errors import UserError
from deeplab_edge.fileio import atomic_path, write_text_atomic

from .presets import DEFAULT_MEAN, DEFAULT_STD, DeepLabConfig

INFO_NAME = "model_info.json"
INFO_MEMBER = "deeplab_edge/model_info.json"


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint needs beside its weights: the config it was built from and the class names."""

    config: DeepLabConfig
    class_names: tuple[str, ...]
    preset: str = ""
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "class_names": list(self.class_names), "preset": self.preset,
                "mean": list(self.mean), "std": list(self.std), "version": self.version, "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> ModelInfo:
        return cls(config=DeepLabConfig.from_dict(d["config"]), class_names=tuple(d["class_names"]),
                   preset=d.get("preset", ""), mean=tuple(d.get("mean", DEFAULT_MEAN)), std=tuple(d.get("std", DEFAULT_STD)),
                   version=d.get("version", ""), extra=d.get("extra", {}))


def write_info(folder: Path, info: ModelInfo) -> Path:
    path = Path(folder) / INFO_NAME
    write_text_atomic(path, json.dumps(info.to_dict(), indent=2))
    return path


def embed_info(checkpoint: Path, info: ModelInfo) -> None:
    """Add (or replace) the info member of a `.keras` zip."""
    checkpoint = Path(checkpoint)
    if checkpoint.suffix.lower() != ".keras" or not zipfile.is_zipfile(checkpoint):
        return
    with zipfile.ZipFile(checkpoint) as z:
        if INFO_MEMBER in z.namelist():
            if z.read(INFO_MEMBER) == _info_bytes(info):
                return
            members = {n: z.read(n) for n in z.namelist() if n != INFO_MEMBER}  # rare: rewrite without it
        else:
            members = None
    if members is None:
        with zipfile.ZipFile(checkpoint, "a") as z:
            z.writestr(INFO_MEMBER, _info_bytes(info))
        return
    with atomic_path(checkpoint) as tmp, zipfile.ZipFile(tmp, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(INFO_MEMBER, _info_bytes(info))


def _info_bytes(info: ModelInfo) -> bytes:
    return json.dumps(info.to_dict(), indent=2).encode()


def read_info(checkpoint: Path) -> ModelInfo | None:
    """The checkpoint's info: the member inside a `.keras` file, else `model_info.json` beside it."""
    checkpoint = Path(checkpoint)
    source, text = None, None
    if checkpoint.suffix.lower() == ".keras" and zipfile.is_zipfile(checkpoint):
        with zipfile.ZipFile(checkpoint) as z:
            if INFO_MEMBER in z.namelist():
                source, text = f"{checkpoint} ({INFO_MEMBER})", z.read(INFO_MEMBER).decode("utf-8", "replace")
    if text is None:
        path = checkpoint.parent / INFO_NAME
        if not path.is_file():
            return None
        source, text = str(path), path.read_text()
    try:
        return ModelInfo.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"The model info in {source} is malformed ({e}); delete it or re-train.") from None


def _refuse_unsafe_h5(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as e:
        raise UserError(f"Cannot open {path} as an HDF5 checkpoint: {e}.") from None
    if config is None:
        raise UserError(f"{path} holds weights only (no model config). Load it with --backbone-weights, "
                        "or pass a full .keras checkpoint.")
    text = config.decode() if isinstance(config, bytes) else str(config)
    if '"class_name": "Lambda"' in text:
        raise UserError(f"{path} contains a Lambda layer, which needs unsafe deserialisation of Python code. "
                        "Refusing to load it; rebuild the model without Lambda layers.")


def load_checkpoint(path: str | Path, *, compile: bool = False):
    """Load a `.keras` or `.h5` checkpoint in safe mode. Returns (model, ModelInfo | None).

    `compile=True` also restores the optimizer and its state (for resuming training).
    """
    path = Path(path)
    if not path.is_file():  # checked before TensorFlow is imported
        raise UserError(f"Checkpoint {path} does not exist{' (it is a folder)' if path.is_dir() else ''}. "
                        "Train one with `deeplab-edge train`, which writes runs/<name>/best.keras.")
    from ._keras import keras
    from .layers import CUSTOM_OBJECTS
    from .losses import IgnoreLabelCrossEntropy, IgnoreLabelMeanIoU

    custom = {**CUSTOM_OBJECTS, "IgnoreLabelCrossEntropy": IgnoreLabelCrossEntropy,
              "IgnoreLabelMeanIoU": IgnoreLabelMeanIoU}
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is not a valid .keras file (not a zip archive); it may be truncated.")
    elif suffix in (".h5", ".hdf5"):
        info = read_info(path)
        if info is not None and info.extra.get("qat"):  # weights of a `train --qat-from` run
            from .qat import load_qat

            return load_qat(path, info), info
        _refuse_unsafe_h5(path)
    else:
        raise UserError(f"Checkpoint {path} must be a .keras or .h5 file; received suffix {suffix!r}.")
    try:
        model = keras.models.load_model(path, custom_objects=custom, compile=compile, safe_mode=True)
    except ValueError as e:
        if "unsafe" in str(e).lower() or "lambda" in str(e).lower():
            raise UserError(f"{path} needs unsafe deserialisation (it contains Python code, e.g. a Lambda "
                            "layer). Refusing to load it in safe mode.") from None
        raise UserError(f"Cannot load checkpoint {path}: {e}") from None
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"Cannot load checkpoint {path}: {e}") from None
    return model, read_info(path)
