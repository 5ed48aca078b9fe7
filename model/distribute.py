"""The tf.distribute strategy: this machine's devices, or a cluster that TF_CONFIG names."""

from __future__ import annotations

import json
import os

from deeplab_edge.errors import UserError

from ._keras import tf


def cluster_role() -> tuple[bool, str] | None:
    """(is_chief, 'worker 1 of 2') when TF_CONFIG names a cluster of more than one task, else None. The chief
    is the `chief` task, or worker 0 when the cluster has none (TensorFlow's own rule)."""
    if not os.environ.get("TF_CONFIG"):
        return None
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
    except (ValueError, AttributeError):
        raise UserError("TF_CONFIG is set but is not valid JSON; unset it or fix it.") from None
    tasks = sum(len(v) for v in cluster.values())
    if tasks <= 1:
        return None
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return chief, f"{kind} {index} of {tasks} tasks"


def get_strategy(devices: tuple[str, ...] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG names a cluster, else Mirrored over this machine's devices."""
    if cluster_role() is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = tuple(d.name for d in (gpus or tf.config.list_logical_devices("CPU")[:1]))
    cross = tf.distribute.ReductionToOneDevice() if not any("GPU" in d for d in devices) else None
    return tf.distribute.MirroredStrategy(devices=list(devices), cross_device_ops=cross)

