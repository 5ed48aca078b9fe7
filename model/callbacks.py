"""Keras callbacks of a training run: the model info embedded in each checkpoint, and epoch timing."""

from __future__ import annotations

import time
from pathlib import Path

from ._keras import keras
from .checkpoint import ModelInfo, embed_info


class EmbedInfo(keras.callbacks.Callback):
    """Writes the run's ModelInfo into each `.keras` checkpoint a ModelCheckpoint callback just saved."""

    def __init__(self, paths: tuple[Path, ...], info: ModelInfo | None) -> None:
        super().__init__()
        self.paths, self.info = paths, info
        self._seen: dict[Path, int] = {}

    def on_epoch_end(self, epoch, logs=None):
        if self.info is None:
            return
        for path in self.paths:
            if path.is_file() and self._seen.get(path) != path.stat().st_mtime_ns:
                embed_info(path, self.info)
                self._seen[path] = path.stat().st_mtime_ns


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch's training steps (the callbacks after it not counted)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)
