"""The one place that chooses the Keras implementation: tf-keras, the Keras 2 API.

Every module imports `keras` and `tf` from here, never `keras` directly, so the
choice is visible and changeable in one line. TensorFlow 2.16+ ships Keras 3 as
`tf.keras`; `TF_USE_LEGACY_KERAS=1` makes `tf.keras` resolve to tf-keras too, so
code and checkpoints agree whichever spelling a user's own script uses.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

KERAS_IMPL = f"tf-keras {keras.__version__} (Keras 2 API) on tensorflow {tf.__version__}"

__all__ = ["KERAS_IMPL", "keras", "tf"]
