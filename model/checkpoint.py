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
        raise UserError(f"{path} holds weights only (no model config). Load it with `backbone_weights`, "
                        "or pass a full .keras checkpoint.")
    text = config.decode() if isinstance(config, bytes) else str(config)
    if '"class_name": "Lambda"' in text:
        raise UserError(f"{path} contains a Lambda layer, which needs unsafe deserialisation of Python code. "
                        "Refusing to load it; rebuild the model without Lambda layers, or pass `unsafe` if you "
                        "trust the file.")


def load_checkpoint(path: str | Path, *, compile: bool = False, options=None):
    """Load a model in safe mode. Returns (model, ModelInfo | None).

    Takes, told apart by their content: tf-keras `.keras`/`.h5` files (ours, and tf-keras models built
    elsewhere), Keras 3 files (keras-hub included) and SavedModel folders; the last two come back as a
    tf-keras wrapper at a static input size (`foreign.load_foreign`, `options`: a `foreign.LoadOptions`).
    `compile=True` also restores the optimizer and its state (for resuming training).
    """
    from .foreign import LoadOptions, load_foreign
    from .model_file import custom_objects_from, detect_kind, load_error

    path = Path(path)
    options = options or LoadOptions()
    if not path.exists():  # checked before TensorFlow is imported
        raise UserError(f"Checkpoint {path} does not exist. Train one with `deeplab-edge train`, which writes "
                        "runs/<name>/best.keras, or pass a .keras/.h5 file or a SavedModel folder.")
    if path.is_file() and path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a valid .keras file (not a zip archive); it may be truncated.")
    kind = detect_kind(path)
    if kind != "tf-keras":
        if compile:
            raise UserError(f"{path} is a {'Keras 3 file' if kind == 'keras3' else 'SavedModel'}; training resumes "
                            "from deeplab-edge checkpoints only.")
        model, _ = load_foreign(path, kind, options)
        return model, None
    from ._keras import keras
    from .layers import CUSTOM_OBJECTS
    from .losses import IgnoreLabelCrossEntropy, IgnoreLabelMeanIoU

    custom = {**CUSTOM_OBJECTS, "IgnoreLabelCrossEntropy": IgnoreLabelCrossEntropy,
              "IgnoreLabelMeanIoU": IgnoreLabelMeanIoU, **custom_objects_from(options.custom_objects)}
    if not zipfile.is_zipfile(path):  # HDF5
        info = read_info(path)
        if info is not None and info.extra.get("qat"):  # weights of a `train --qat-from` run
            from .qat_graph import load_qat

            return load_qat(path, info), info
        if not options.unsafe:
            _refuse_unsafe_h5(path)
    try:
        model = keras.models.load_model(path, custom_objects=custom, compile=compile, safe_mode=not options.unsafe)
    except (ValueError, OSError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise load_error(path, e, unsafe=options.unsafe) from None
    return model, read_info(path)
