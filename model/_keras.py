"""The one place that chooses the Keras implementation: tf-keras, the Keras 2 API.

Every module imports `keras` and `tf` from here, never `keras` directly, so the
choice is visible and changeable in one line. TensorFlow 2.16+ ships Keras 3 as
`tf.keras`; `TF_USE_LEGACY_KERAS=1` makes `tf.keras` resolve to tf-keras too, so
code and checkpoints agree whichever spelling a user's own script uses.
"""

from __future__ import annotations

import os

from deeplab_edge.logs import held_stderr

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's import prints absl lines TF_CPP_MIN_LOG_LEVEL does not cover; held back when quiet.
with held_stderr():
    import tensorflow as tf
    import tf_keras as keras

KERAS_IMPL = f"tf-keras {keras.__version__} (Keras 2 API) on tensorflow {tf.__version__}"

__all__ = ["KERAS_IMPL", "keras", "tf"]
