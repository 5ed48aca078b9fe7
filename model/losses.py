"""Loss and metric that respect the ignore label (255)."""

from __future__ import annotations

from ._keras import keras, tf
from .data import IGNORE_LABEL


@keras.utils.register_keras_serializable(package="deeplab_edge")
class IgnoreLabelCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on logits, averaged over each image's non-ignored pixels."""

    def __init__(self, ignore_label: int = IGNORE_LABEL, name: str = "ce_ignore", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_label = ignore_label

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        if y_true.shape.rank == y_pred.shape.rank:
            y_true = tf.squeeze(y_true, -1)
        valid = tf.not_equal(y_true, self.ignore_label)
        safe = tf.where(valid, y_true, tf.zeros_like(y_true))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(y_pred, tf.float32))
        valid = tf.cast(valid, tf.float32)
        return tf.reduce_sum(ce * valid, axis=[1, 2]) / tf.maximum(tf.reduce_sum(valid, axis=[1, 2]), 1.0)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


@keras.utils.register_keras_serializable(package="deeplab_edge")
class IgnoreLabelMeanIoU(keras.metrics.Metric):
    """Mean IoU over classes present (union > 0), from a streaming confusion matrix; ignore label skipped."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, name: str = "miou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.cm = self.add_weight("confusion", shape=(num_classes, num_classes), initializer="zeros",
                                  dtype=tf.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        y_pred = tf.reshape(tf.argmax(y_pred, axis=-1, output_type=tf.int32), [-1])
        keep = tf.not_equal(y_true, self.ignore_label)
        cm = tf.math.confusion_matrix(tf.boolean_mask(y_true, keep), tf.boolean_mask(y_pred, keep),
                                      num_classes=self.num_classes, dtype=tf.float64)
        self.cm.assign_add(cm)

    def result(self):
        tp = tf.linalg.diag_part(self.cm)
        union = tf.reduce_sum(self.cm, 0) + tf.reduce_sum(self.cm, 1) - tp
        present = union > 0
        iou = tf.boolean_mask(tp, present) / tf.boolean_mask(union, present)
        return tf.cast(tf.cond(tf.size(iou) > 0, lambda: tf.reduce_mean(iou), lambda: tf.constant(0.0, tf.float64)),
                       tf.float32)

    def reset_state(self):
        self.cm.assign(tf.zeros_like(self.cm))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}
