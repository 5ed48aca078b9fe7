"""Users' own tf-keras models, built without deeplab-edge, carried through export, verify, predict and
bench with only the flags a user would pass: a small U-Net with one sigmoid channel (trained briefly on
a 2-class version of the synthetic set, inputs scaled to 0..1) and a keras.io-style DeepLabV3+ on
ResNet50 (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deeplab_edge.cli import main

SIZE = 64


def small_unet(size: int = SIZE):
    """A two-level U-Net ending in one sigmoid channel, written the way a user would."""
    from deeplab_edge.model._keras import keras

    L = keras.layers
    inp = keras.Input((size, size, 3))
    c1 = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    p1 = L.MaxPooling2D()(c1)
    c2 = L.Conv2D(32, 3, padding="same", activation="relu")(p1)
    p2 = L.MaxPooling2D()(c2)
    b = L.Conv2D(32, 3, padding="same", activation="relu")(p2)
    u2 = L.Concatenate()([L.UpSampling2D()(b), c2])
    d2 = L.Conv2D(32, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.UpSampling2D()(d2), c1])
    d1 = L.Conv2D(16, 3, padding="same", activation="relu")(u1)
    out = L.Conv2D(1, 1, activation="sigmoid")(d1)
    return keras.Model(inp, out, name="user_unet")


@pytest.fixture(scope="module")
def user_unet(tmp_path_factory, synthetic) -> Path:
    """The U-Net trained for a few epochs with plain model.fit, saved as .keras."""
    from deeplab_edge.model._keras import keras

    tx, ty, _, _ = synthetic
    model = small_unet()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    x = tx.astype(np.float32) / 255.0
    y = (ty > 0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    model.fit(x, y, batch_size=16, epochs=12, verbose=0)
    path = tmp_path_factory.mktemp("user") / "unet.keras"
    model.save(path)
    return path


def test_user_unet_exports_verifies_predicts_and_benches(user_unet, binary_folder, synthetic, tmp_path, capsys):
    from deeplab_edge.model._keras import keras
    from deeplab_edge.runtime import load_predictor

    out = tmp_path / "exp"
    rc = main(["export", str(user_unet), "--data", str(binary_folder), "--input-scale", "0-1",
               "--class-names", "background,object", "--out", str(out), "--formats", "tflite_fp32", "tflite_int8",
               "onnx_fp32", "onnx_int8", "--calibration-images", "32", "--eval-images", "16"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert text.count("PASS") == 4 and "FAIL" not in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["output"] == "probabilities" and manifest["model"]["class_names"] == ["background", "object"]
    assert manifest["model"]["mean"] == [0.0, 0.0, 0.0] and manifest["model"]["std"] == [255.0] * 3
    assert manifest["model"]["keras_miou"] > 0.6  # it learned something: the files are judged on a real model

    # The runtime reads everything it needs from the files: no flags.
    _, _, vx, _ = synthetic
    keras_mask = (keras.models.load_model(user_unet).predict(vx.astype(np.float32) / 255.0, verbose=0)[..., 0] >= 0.5)
    for fmt, stem in (("tflite_fp32", "unet_fp32.tflite"), ("onnx_fp32", "unet_fp32.onnx"),
                      ("tflite_int8", "unet_int8.tflite"), ("onnx_int8", "unet_int8.onnx")):
        pred = load_predictor(out / stem)
        assert pred.meta.class_names == ("background", "object"), fmt
        masks = np.stack(pred.predict(list(vx)))
        agreement = np.mean(masks == keras_mask)
        assert agreement > (0.999 if "fp32" in fmt else 0.95), (fmt, agreement)

    rc = main(["predict", str(out / "unet_int8.tflite"), str(binary_folder / "JPEGImages"), "--out",
               str(tmp_path / "pred")])
    assert rc == 0 and len(list((tmp_path / "pred").glob("*_overlay.png"))) > 10
    rc = main(["bench", str(out / "manifest.json"), "--data", str(binary_folder), "--eval-images", "8",
               "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(tmp_path / "b"), "--device", "cpu"])
    assert rc == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]}
    assert {"tflite_fp32", "tflite_int8", "onnx_fp32", "onnx_int8"} <= set(rows)
    assert all(r["status"] == "ok" and r["miou"] > 0.5 for r in rows.values() if r["device"] == "cpu")


def test_user_model_without_normalisation_is_refused(user_unet, binary_folder, tmp_path, capsys):
    rc = main(["export", str(user_unet), "--data", str(binary_folder), "--out", str(tmp_path / "x"),
               "--formats", "tflite_fp32"])
    err = capsys.readouterr().err
    assert rc == 2 and "--input-scale" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())  # nothing half-written


def test_sidecar_model_json_replaces_flags(user_unet, binary_folder, tmp_path, capsys):
    import shutil

    model = tmp_path / "unet.keras"
    shutil.copy(user_unet, model)
    (tmp_path / "unet.json").write_text(json.dumps({"input_scale": "0-1", "class_names": ["bg", "thing"]}))
    rc = main(["export", str(model), "--data", str(binary_folder), "--out", str(tmp_path / "x"),
               "--formats", "tflite_fp32", "--eval-images", "8"])
    assert rc == 0, capsys.readouterr()
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["model"]["class_names"] == ["bg", "thing"] and manifest["model"]["std"] == [255.0] * 3


def test_bench_file_without_metadata_gives_latency_row(tmp_path, capsys):
    """A foreign file with no metadata and no normalisation flags: latency is still measured, and the
    report says why there is no mIoU instead of guessing a normalisation."""
    import tensorflow as tf

    model = small_unet(32)
    path = tmp_path / "foreign.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    out = tmp_path / "b"
    rc = main(["bench", str(path), "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(out),
               "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0, text
    row = json.loads((out / "bench.json").read_text())["rows"][0]
    assert row["status"] == "ok" and row["latency"]["p50_ms"] > 0 and row["miou"] is None and row["note"]
    assert "latency only" in text.lower() or "latency only" in (out / "bench.md").read_text().lower()


def test_bench_data_with_other_classes_is_refused(exported, binary_folder, tmp_path, capsys):
    files = {f.format: str(f.path) for f in exported[0].files}
    rc = main(["bench", files["tflite_fp32"], "--data", str(binary_folder), "--eval-images", "4",
               "--out", str(tmp_path / "b"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "class" in err and "Traceback" not in err


def keras_io_deeplab(size: int, num_classes: int):
    """DeepLabV3+ as the keras.io example writes it: ResNet50 (random weights), ASPP on conv4_block6_2_relu,
    decoder with conv2_block3_2_relu, bilinear upsampling, logits."""
    from deeplab_edge.model._keras import keras

    L = keras.layers

    def block(x, filters=256, k=3, rate=1):
        x = L.Conv2D(filters, k, dilation_rate=rate, padding="same", use_bias=False,
                     kernel_initializer=keras.initializers.HeNormal())(x)
        return L.ReLU()(L.BatchNormalization()(x))

    def aspp(x):
        dims = x.shape
        pooled = L.AveragePooling2D(pool_size=(dims[-3], dims[-2]))(x)
        pooled = block(pooled, k=1)
        pooled = L.UpSampling2D(size=(dims[-3] // pooled.shape[1], dims[-2] // pooled.shape[2]),
                                interpolation="bilinear")(pooled)
        branches = [pooled, block(x, k=1, rate=1), block(x, rate=6), block(x, rate=12), block(x, rate=18)]
        return block(L.Concatenate(axis=-1)(branches), k=1)

    inp = keras.Input((size, size, 3))
    resnet = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inp)
    x = aspp(resnet.get_layer("conv4_block6_2_relu").output)
    x = L.UpSampling2D(size=(size // 4 // x.shape[1], size // 4 // x.shape[2]), interpolation="bilinear")(x)
    low = block(resnet.get_layer("conv2_block3_2_relu").output, filters=48, k=1)
    x = block(block(L.Concatenate(axis=-1)([x, low])))
    x = L.UpSampling2D(size=(size // x.shape[1], size // x.shape[2]), interpolation="bilinear")(x)
    return keras.Model(inp, L.Conv2D(num_classes, 1, padding="same")(x), name="keras_io_deeplabv3plus")


@pytest.mark.slow
def test_keras_io_deeplabv3plus_resnet50(synthetic_folder, tmp_path, capsys):
    """The keras.io DeepLabV3+ (ResNet50 backbone, random weights, ImageNet-style caffe/imagenet inputs) exports
    to the float formats and verifies; its .tflite carries the class names and normalisation."""
    from deeplab_edge.runtime import load_predictor

    model = keras_io_deeplab(128, 4)
    path = tmp_path / "deeplab_resnet50.h5"
    model.save(path)
    out = tmp_path / "exp"
    rc = main(["export", str(path), "--data", str(synthetic_folder), "--input-scale", "imagenet", "--out", str(out),
               "--formats", "tflite_fp32", "tflite_fp16", "onnx_fp32", "--eval-images", "8"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert text.count("PASS") == 3
    pred = load_predictor(out / "deeplab_resnet50_fp32.tflite")
    assert pred.meta.class_names == ("background", "red square", "green disc", "blue bar")
    assert pred.meta.input_size == (128, 128)


def test_quant_report_and_keep_float_on_a_user_model(user_unet, binary_folder, tmp_path, capsys):
    """A model deeplab-edge did not train: the report takes the same normalisation flags as export, and its
    names (fused TFLite ops of the user's Keras layers) are what --keep-float keeps."""
    flags = ["--data", str(binary_folder), "--input-scale", "0-1", "--class-names", "background,object",
             "--calibration-images", "8"]
    assert main(["quant-report", str(user_unet), *flags, "--formats", "tflite_int8", "--eval-images", "2",
                 "--out", str(tmp_path / "qr")]) == 0
    layers = json.loads((tmp_path / "qr" / "tflite_int8.json").read_text())["layers"]
    assert layers and all("user_unet/" in e["name"] or ":" in e["name"] for e in layers)
    capsys.readouterr()
    assert main(["export", str(user_unet), *flags, "--formats", "tflite_int8", "--keep-float", layers[0]["name"],
                 "--eval-images", "8", "--out", str(tmp_path / "x")]) == 0
    kept = json.loads((tmp_path / "x" / "manifest.json").read_text())["files"][0]["keep_float"]["kept_float"]
    assert kept == [layers[0]["name"]]
