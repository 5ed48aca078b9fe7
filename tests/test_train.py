"""Training: loss falls, checkpoints and logs are written, resume works, Mirrored strategy on 2 devices."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from deeplab_edge.errors import UserError


def test_training_loss_falls_and_writes_outputs(trained_tiny):
    run_dir, result = trained_tiny
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) == 6 and losses[-1] < losses[0] * 0.7
    for name in ("best.keras", "last.keras", "model_info.json", "curves.png", "train_result.json"):
        assert (run_dir / name).is_file(), name
    assert result.best_val_miou > 0.3  # 4 classes; chance with flat predictions is ~0.2
    info = json.loads((run_dir / "model_info.json").read_text())
    assert info["class_names"][0] == "background" and info["preset"] == "tiny"


def test_checkpoint_moved_alone_keeps_its_info(trained_tiny, tmp_path):
    """best.keras carries its config and class names inside (a zip member Keras ignores), so it exports
    with the right names after being moved without model_info.json."""
    import shutil
    import zipfile

    from deeplab_edge.model.checkpoint import INFO_MEMBER, load_checkpoint

    run_dir, _ = trained_tiny
    sidecar = json.loads((run_dir / "model_info.json").read_text())
    for name in ("best.keras", "last.keras"):
        with zipfile.ZipFile(run_dir / name) as z:
            assert json.loads(z.read(INFO_MEMBER)) == sidecar, name
    moved = shutil.copy(run_dir / "best.keras", tmp_path / "model.keras")
    assert not (tmp_path / "model_info.json").exists()
    model, info = load_checkpoint(moved)
    assert info is not None and list(info.class_names) == sidecar["class_names"] and info.preset == "tiny"
    assert info.config.to_dict() == sidecar["config"] and model.output_shape[-1] == len(info.class_names)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    code = textwrap.dedent(f"""
        import deeplab_edge.model._keras
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from deeplab_edge.model.demo_data import synthetic_arrays
        from deeplab_edge.model.data import FolderDataset
        from deeplab_edge.model.demo_data import SYNTHETIC_CLASSES
        from deeplab_edge.model.presets import get_preset
        from deeplab_edge.model.distribute import get_strategy
        from deeplab_edge.model.train import TrainSettings, train
        devices = ("/cpu:0", "/cpu:1")
        assert get_strategy(devices).num_replicas_in_sync == 2
        x, y = synthetic_arrays(40, 64)
        ds = FolderDataset("{tmp_path}", "voc", SYNTHETIC_CLASSES, (), ())
        cfg = get_preset("tiny").config.replace(num_classes=4)
        r = train(cfg, ds, "{tmp_path / 'm'}", TrainSettings(epochs=2, batch_size=8, steps_per_epoch=3,
                  verbose=0, devices=devices), arrays=(x[:32], y[:32], x[32:], y[32:]))
        h = r.history["loss"]
        print("REPLICAS_OK", h)
        assert all(v == v for v in h)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS_OK" in proc.stdout


@pytest.mark.slow  # ~45 s; BN recalibration itself runs in every fast training test
def test_precise_batchnorm_is_the_plain_average_and_beats_stale_statistics(trained_tiny, synthetic):
    """After precise BN every moving mean is exactly the average of its per-batch means (nothing stale
    is kept, unlike momentum updates), and the recalibrated model scores at least as well on validation
    images as the same weights with deliberately stale statistics."""
    import numpy as np

    from deeplab_edge.metrics import segmentation_metrics
    from deeplab_edge.model._keras import keras, tf
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.precise_bn import batchnorm_layers, precise_batchnorm
    from deeplab_edge.runtime.kernels import normalise

    run_dir, _ = trained_tiny
    model, info = load_checkpoint(run_dir / "best.keras")
    tx, _, vx, vy = synthetic
    batches = [normalise(tx[i:i + 16], info.mean, info.std) for i in range(0, 48, 16)]
    layers = batchnorm_layers(model)
    # Per-batch means of each BN layer's input, computed independently with a probe model.
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    expected = [np.mean([np.asarray(probe(b, training=True)[i]).mean(axis=(0, 1, 2)) for b in batches], axis=0)
                for i in range(len(layers))]

    def miou() -> float:
        pred = model.predict(normalise(vx, info.mean, info.std), verbose=0).argmax(-1)
        return segmentation_metrics(vy, pred, model.output_shape[-1]).miou

    for layer in layers:  # stale statistics: what a long-ago moving average might hold
        layer.moving_mean.assign(layer.moving_mean + 0.5 * tf.sqrt(layer.moving_variance))
    stale = miou()
    assert precise_batchnorm(model, iter(batches), steps=3) == 3
    for layer, mean in zip(layers, expected, strict=True):
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    assert all(isinstance(layer.momentum, float) for layer in layers)  # restored
    assert miou() > stale


def test_preset_normalisation_flows_refuses_overwrite_and_resumes(tmp_path, synthetic, synthetic_folder, monkeypatch):
    """A preset's mean/std (here [0, 1] inputs) is what training normalises with, what the checkpoint's
    info stores (inside the .keras too), what a resumed run keeps and what the exported file's metadata
    says. A run folder is never overwritten; --resume continues with the optimizer state. (One test:
    each train() call costs ~50 s of tracing here.)"""
    import dataclasses

    import numpy as np

    from deeplab_edge.export.calibration import calibration_and_verification
    from deeplab_edge.export.formats import resolve_formats
    from deeplab_edge.export.pipeline import export_all
    from deeplab_edge.model import presets
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.input_pipeline import array_pairs, make_tf_dataset
    from deeplab_edge.model.train import TrainSettings, train
    from deeplab_edge.runtime import load_predictor
    from deeplab_edge.runtime.kernels import normalise

    unit = dataclasses.replace(presets.PRESETS["tiny"], name="tiny01", mean=(0.0, 0.0, 0.0), std=(255.0,) * 3)
    monkeypatch.setitem(presets.PRESETS, "tiny01", unit)
    tx, ty, _, _ = synthetic
    x, _ = next(iter(make_tf_dataset(array_pairs(tx[:4], ty[:4]), tx.shape[1:3], batch_size=4, training=False,
                                     mean=unit.mean, std=unit.std)))
    np.testing.assert_allclose(x.numpy(), tx[:4] / 255.0, atol=1e-6)  # what the model is trained on
    ds = scan_folder(synthetic_folder)
    cfg = unit.config.replace(num_classes=ds.num_classes)
    kw = dict(batch_size=16, steps_per_epoch=1, verbose=0, bn_recalibration_steps=1)
    train(cfg, ds, tmp_path / "run", TrainSettings(epochs=1, **kw), preset="tiny01", arrays=synthetic)
    (tmp_path / "run" / "model_info.json").unlink()  # the info inside the .keras is enough
    with pytest.raises(UserError, match="`resume`"):
        train(cfg, ds, tmp_path / "run", TrainSettings(epochs=1, **kw), preset="tiny01", arrays=synthetic)
    r = train(cfg, ds, tmp_path / "run", TrainSettings(epochs=2, resume=True, **kw), preset="tiny01", arrays=synthetic)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(x["epoch"]) for x in rows] == [0, 1] and r.epochs_run == 1
    resumed, _ = load_checkpoint(tmp_path / "run" / "last.keras", compile=True)
    assert int(resumed.optimizer.iterations.numpy()) == 2  # optimizer state came back, not only weights
    with pytest.raises(UserError, match="resume it with the same preset"):
        train(cfg.replace(width=16), ds, tmp_path / "run", TrainSettings(epochs=3, resume=True, **kw),
              preset="tiny01", arrays=synthetic)
    model, info = load_checkpoint(r.best_checkpoint)
    assert info.mean == (0.0, 0.0, 0.0) and info.std == (255.0,) * 3
    calib, vx, vy = calibration_and_verification(ds, cfg.input_size, resolve_formats(["tflite_fp32"]), None, 4,
                                                 info.mean, info.std, note=lambda m: None)
    x = normalise(vx, info.mean, info.std)  # the verification images are pixels; the preset's mean/std maps them
    assert vx.dtype == np.uint8 and x.min() >= 0.0 and x.max() <= 1.0
    rep = export_all(model, info, tmp_path / "exp", name="t", formats=["tflite_fp32"], calibration=calib,
                     verify_images=vx, verify_masks=vy, progress=lambda m: None, pixel_input=False)
    meta = load_predictor(rep.files[0].path).meta  # a file taking normalised floats carries the preset's mean/std
    assert meta.mean == (0.0, 0.0, 0.0) and meta.std == (255.0, 255.0, 255.0)


def test_eval_scores_each_image_at_its_own_size(trained_tiny, synthetic, tmp_path, capsys):
    """The standard protocol: logits resized to each image, scored against its mask as it is."""
    import json

    import numpy as np
    from PIL import Image

    from deeplab_edge.cli import main
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import scan_folder
    from deeplab_edge.model.evaluate import evaluate_model

    _, _, vx, vy = synthetic
    sizes = [(80, 100), (96, 72), (64, 64), (120, 90)]  # (h, w): not the model's 64x64
    big_x = [np.asarray(Image.fromarray(vx[i]).resize((w, h), Image.BILINEAR)) for i, (h, w) in enumerate(sizes)]
    big_y = [np.asarray(Image.fromarray(vy[i]).resize((w, h), Image.NEAREST)) for i, (h, w) in enumerate(sizes)]
    root = tmp_path / "sizes"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, (x, y) in enumerate(zip(big_x, big_y, strict=True)):
        Image.fromarray(x).save(root / "images" / f"v{i}.png")
        Image.fromarray(y, mode="L").save(root / "masks" / f"v{i}.png")
    model, info = load_checkpoint(trained_tiny[0] / "best.keras")
    (root / "class_names.txt").write_text("\n".join(info.class_names) + "\n")
    ds = scan_folder(root)
    samples = ds.train + ds.val
    names = info.class_names
    orig = evaluate_model(model, samples, names, (64, 64), info.mean, info.std, resolution="original", batch_size=3)
    small = evaluate_model(model, samples, names, (64, 64), info.mean, info.std, resolution="model")
    ignored = sum(int((y == 255).sum()) for y in big_y)
    assert orig.pixels == sum(h * w for h, w in sizes) - ignored  # every pixel of every image, as it is
    assert small.pixels < orig.pixels and small.pixels <= 4 * 64 * 64
    assert abs(orig.miou - small.miou) < 0.15 and orig.miou > 0.2  # the same model, another protocol
    rc = main(["eval", str(trained_tiny[0] / "best.keras"), "--data", str(root), "--split", "train", "--json",
               str(tmp_path / "e.json")])
    assert rc == 0 and "each image's own size" in capsys.readouterr().out
    assert json.loads((tmp_path / "e.json").read_text())["resolution"] == "original"


@pytest.mark.slow  # two TensorFlow processes on 2 cores: ~60-100 s
def test_two_workers_train_in_step_and_only_the_chief_writes(synthetic_folder, tmp_path):
    """MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 (TF_CONFIG, free ports), the
    same command and --out, the tiny preset for 2 epochs."""
    import json
    import os
    import re
    import socket
    import subprocess
    import sys

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    out, scratch_root = tmp_path / "run", tmp_path / "tmp"
    scratch_root.mkdir()
    procs = []
    for index in range(2):
        env = {**os.environ, "TMPDIR": str(scratch_root), "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "deeplab_edge", "train", "--preset", "tiny", "--data", str(synthetic_folder),
             "--epochs", "2", "--batch-size", "16", "--out", str(out), "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for p in procs:
        try:
            text, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outputs.append(text)
        assert p.returncode == 0, text[-3000:]
    digests = [re.search(r"final weights sha256 ([0-9a-f]{64})", t).group(1) for t in outputs]
    assert digests[0] == digests[1]  # the same weights on both workers
    assert "outputs were scratch" in outputs[1] and "outputs were scratch" not in outputs[0]
    for name in ("best.keras", "last.keras", "log.csv", "curves.png", "model_info.json", "train_result.json"):
        assert (out / name).is_file(), name
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs, written once
    assert json.loads((out / "train_result.json").read_text())["final_weights_sha256"] == digests[0]
    assert not any(scratch_root.iterdir())  # the other worker's scratch folder is gone
