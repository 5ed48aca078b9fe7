"""What a model file is and needs, read from its content: its kind (tf-keras, Keras 3, SavedModel), the
modules its config names, the custom classes a user's file supplies, and what a failed load means.

For our own checkpoints (`checkpoint.load_checkpoint`) and models built elsewhere (`foreign.load_foreign`) alike.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

from deeplab_edge.errors import UserError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def detect_kind(path: str | Path) -> str:
    """"tf-keras", "keras3" or "savedmodel", read from the file or folder itself (never its suffix alone)."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel"
        raise UserError(f"{path} is a folder without saved_model.pb, so not a TensorFlow SavedModel; pass a "
                        ".keras/.h5 file or a SavedModel folder (what `model.export(DIR)` or "
                        "`tf.saved_model.save(obj, DIR)` writes).")
    if not path.is_file():
        raise UserError(f"Model {path} does not exist. Train one with `deeplab-edge train` (runs/<name>/best.keras) "
                        "or pass a .keras/.h5 file or a SavedModel folder.")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_SIGNATURE:
        return "keras3" if _h5_keras_version(path).startswith("3") else "tf-keras"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise UserError(f"{path} is a zip archive without config.json, so not a Keras model file; "
                                "save the model with `model.save('model.keras')`.")
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        return "keras3" if str(meta.get("keras_version", "")).startswith("3") else "tf-keras"
    raise UserError(f"{path} is neither a Keras file (a .keras zip or an HDF5 .h5) nor a SavedModel folder; it may "
                    "be truncated or of another kind. Save the model with `model.save('model.keras')`.")


def _h5_keras_version(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "")
    except OSError as e:
        raise UserError(f"Cannot open {path} as an HDF5 Keras file: {e}.") from None
    return version.decode() if isinstance(version, bytes) else str(version)



def config_modules(path: Path) -> set[str]:
    """The top-level modules a .keras file's config names (e.g. keras_hub)."""
    if not zipfile.is_zipfile(path):
        return set()
    with zipfile.ZipFile(path) as z:
        text = z.read("config.json").decode("utf-8", "replace")
    found = set()

    def walk(node):
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(module, str) and module:
                found.add(module.split(".")[0])
            registered = node.get("registered_name")
            if isinstance(registered, str) and ">" in registered:
                found.add(registered.split(">")[0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(text))
    return found


def custom_objects_from(file: str | Path | None) -> dict:
    """The classes a model needs, from a Python file: its `CUSTOM_OBJECTS` dict, else every class it defines
    (importing it also runs its `register_keras_serializable` decorators)."""
    if file is None:
        return {}
    file = Path(file)
    if not file.is_file() or file.suffix != ".py":
        raise UserError(f"`custom_objects` takes a Python file (.py) that defines the model's classes; received "
                        f"{file}{' (not found)' if not file.exists() else ''}.")
    spec = importlib.util.spec_from_file_location(f"deeplab_edge_custom_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's own code: name the file and the error, no traceback
        raise UserError(f"Importing `custom_objects` {file} failed: {type(e).__name__}: {e}") from None
    if isinstance(getattr(module, "CUSTOM_OBJECTS", None), dict):
        return dict(module.CUSTOM_OBJECTS)
    return {k: v for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__}


def load_error(path: Path, e: Exception, *, unsafe: bool) -> UserError:
    """One line for a Keras load failure: the class that is not registered, or the unsafe code it holds."""
    import re

    text = str(e)
    first = text.split("Full object config")[0].split("config={")[0].strip().splitlines()
    first = (first[0] if first else type(e).__name__)[:300]
    if not unsafe and ("safe_mode" in text or "unsafe" in text.lower() or "lambda" in text.lower()):
        return UserError(f"{path} holds Python code (a Lambda layer or a function), which loading runs; refused in "
                         "safe mode. Rebuild the model without Lambda layers, or pass `unsafe` if you trust the file.")
    m = (re.search(r"Could not locate (?:class|function) '([^']+)'", text)
         or re.search(r"Unknown (?:layer|object|class)[^:]*: '?([\w.>]+)", text)
         or re.search(r"Could not deserialize class '([^']+)'", text))
    if m:
        return UserError(f"{path} uses the class {m.group(1)!r}, which is not registered here. Pass "
                         "`custom_objects` FILE.py with the module that defines it (a CUSTOM_OBJECTS dict or the "
                         "decorated classes), or install the package it comes from.")
    return UserError(f"Cannot load {path}: {first}")

