"""mIoU against a hand-computed confusion matrix; the Keras metric agrees with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from deeplab_edge.metrics import confusion_matrix, segmentation_metrics


def test_miou_hand_computed():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    preds = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = confusion_matrix(labels, preds, 3)
    # rows = truth: class0 -> {0:1, 1:1}; class1 -> {1:3}; class2 -> {2:1, 0:1}; the 255 pixel is skipped.
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    m = segmentation_metrics(labels, preds, 3)
    # IoU0 = 1/(2+2-1) = 1/3, IoU1 = 3/(3+4-3) = 3/4, IoU2 = 1/(2+1-1) = 1/2
    assert m.per_class_iou == pytest.approx((1 / 3, 3 / 4, 1 / 2))
    assert m.miou == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m.pixel_accuracy == pytest.approx(5 / 7)


def test_absent_class_is_not_averaged():
    m = segmentation_metrics(np.array([0, 0, 1]), np.array([0, 0, 1]), 4)
    assert m.per_class_iou[2] is None and m.miou == 1.0


def test_keras_metric_and_loss_respect_ignore():
    from deeplab_edge.model._keras import tf
    from deeplab_edge.model.losses import IgnoreLabelCrossEntropy, IgnoreLabelMeanIoU

    labels = np.array([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    preds = np.array([[[0, 1, 1, 1], [2, 0, 2, 1]]])
    logits = tf.one_hot(preds, 3) * 5.0
    metric = IgnoreLabelMeanIoU(3)
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3, abs=1e-6)
    loss = IgnoreLabelCrossEntropy()
    # Changing the logits of the ignored pixel does not change the loss.
    other = tf.tensor_scatter_nd_update(logits, [[0, 1, 2]], [[0.0, 100.0, -100.0]])
    assert float(loss(labels, logits)) == pytest.approx(float(loss(labels, other)))
