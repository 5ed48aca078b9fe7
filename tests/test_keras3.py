"""Models from the Keras that `pip install tensorflow` brings (Keras 3), keras-hub and SavedModels: exported to
the default formats, quantised and verified like ours, with no flags where the model says what it needs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from deeplab_edge.cli import main

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
SIZE = 64


def keras3_net(classes: int, activation: str | None = None, *, rescaling: bool = True, lam: bool = False):
    """A small Keras 3 functional segmenter: [Rescaling], two strided convs, bilinear upsampling, 1x1 head."""
    import keras

    L = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 255.0)(inp) if rescaling else inp
    if lam:
        x = L.Lambda(lambda t: t * 2.0)(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = L.UpSampling2D(4, interpolation="bilinear")(x)
    return keras.Model(inp, L.Conv2D(classes, 1, activation=activation)(x))


@pytest.fixture(scope="module")
def keras3_models(tmp_path_factory, synthetic) -> dict[str, Path]:
    """Keras 3 models trained briefly with Keras 3's own fit on the synthetic set: 4 classes (logits), one sigmoid
    foreground channel, the 4-class one as a SavedModel (`model.export`), and a tf-keras .h5."""
    import keras

    from deeplab_edge.model._keras import keras as tfk

    tx, ty, _, _ = synthetic
    root = tmp_path_factory.mktemp("keras3")
    keras.utils.set_random_seed(0)
    multi = keras3_net(4)
    multi.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    multi.fit(tx.astype(np.float32), ty, epochs=12, batch_size=16, verbose=0)
    multi.save(root / "k3.keras")
    multi.export(str(root / "k3_saved"), format="tf_saved_model", verbose=False)
    binary = keras3_net(1, "sigmoid")
    binary.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    binary.fit(tx.astype(np.float32), (ty > 0).astype(np.float32)[..., None], epochs=12, batch_size=16, verbose=0)
    binary.save(root / "k3_sigmoid.keras")
    keras3_net(4, lam=True).save(root / "k3_lambda.keras")
    # tf-keras, as the toolkit took before: a model trained on 0..1 inputs, saved as .h5
    L = tfk.layers
    inp = tfk.Input((SIZE, SIZE, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    h5 = tfk.Model(inp, L.Conv2D(4, 1)(L.UpSampling2D(2, interpolation="bilinear")(x)))
    h5.compile(tfk.optimizers.Adam(3e-3), tfk.losses.SparseCategoricalCrossentropy(from_logits=True))
    tfk.utils.set_random_seed(0)
    h5.fit(tx.astype(np.float32) / 255.0, ty, epochs=12, batch_size=16, verbose=0)
    h5.save(root / "tfk.h5")
    return {"keras3": root / "k3.keras", "sigmoid": root / "k3_sigmoid.keras", "saved": root / "k3_saved",
            "h5": root / "tfk.h5", "lambda": root / "k3_lambda.keras"}


def test_kinds_are_read_from_content_not_suffix(keras3_models, tmp_path):
    import shutil

    from deeplab_edge.errors import UserError
    from deeplab_edge.model.model_file import detect_kind

    assert detect_kind(keras3_models["keras3"]) == "keras3"
    assert detect_kind(keras3_models["saved"]) == "savedmodel"
    assert detect_kind(keras3_models["h5"]) == "tf-keras"
    odd = tmp_path / "model.bin"  # a Keras 3 file under another name is still one
    shutil.copy(keras3_models["keras3"], odd)
    assert detect_kind(odd) == "keras3"
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a valid .keras"):
        from deeplab_edge.model.checkpoint import load_checkpoint

        load_checkpoint(tmp_path / "junk.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="saved_model.pb"):
        detect_kind(tmp_path / "empty")


@pytest.mark.parametrize("kind, flags, classes", [
    ("keras3", [], 4),  # normalisation from its leading Rescaling layer: no flags
    ("sigmoid", ["--class-names", "background,object"], 2),
    ("saved", ["--input-scale", "0-255"], 4),  # a SavedModel's graph does not say; the flag does
    ("h5", ["--input-scale", "0-1"], 4),
])
def test_every_kind_exports_default_formats_and_passes(kind, flags, classes, keras3_models, synthetic_folder,
                                                       binary_folder, tmp_path, capsys):
    data = binary_folder if classes == 2 else synthetic_folder
    out = tmp_path / "exp"
    rc = main(["export", str(keras3_models[kind]), "--data", str(data), *flags, "--out", str(out),
               "--eval-images", "8", "--calibration-images", "32"])
    text = capsys.readouterr().out
    assert rc == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["format"]: f for f in manifest["files"]}
    assert set(files) == {"tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "onnx_fp32", "onnx_int8"}
    assert all(f["verification"]["passed"] for f in files.values()), text
    assert manifest["model"]["keras_miou"] > 0.5  # trained: the int8 files are judged on a real model
    assert manifest["model"]["macs"] > 0
    expected_kind = {"keras3": "keras3", "sigmoid": "keras3", "saved": "savedmodel", "h5": "tf-keras"}[kind]
    assert manifest["model"]["source"]["kind"] == expected_kind
    if kind == "keras3":
        assert manifest["model"]["mean"] == [0.0] * 3 and manifest["model"]["std"] == [1.0] * 3
        assert "Rescaling" in manifest["model"]["source"]["normalisation_from"]
    if kind == "sigmoid":
        assert manifest["model"]["output"] == "probabilities"


def test_keras3_reference_row_in_bench(keras3_models, synthetic_folder, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", str(keras3_models["keras3"]), "--data", str(synthetic_folder), "--out", str(out),
                 "--formats", "tflite_fp32", "tflite_int8", "--eval-images", "8", "--calibration-images", "32"]) == 0
    rc = main(["bench", str(out / "manifest.json"), "--data", str(synthetic_folder), "--eval-images", "8",
               "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(tmp_path / "b"), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]}
    keras_row = rows["keras_fp32"]
    assert keras_row["status"] == "ok" and "Keras 3" in keras_row["provider"]
    # The reference row normalises as the model was trained, so it scores like the files.
    assert keras_row["miou"] > 0.5 and abs(keras_row["miou"] - rows["tflite_fp32"]["miou"]) < 0.005


def test_unsafe_and_unknown_classes_are_one_line(keras3_models, synthetic_folder, tmp_path, capsys):
    rc = main(["export", str(keras3_models["lambda"]), "--data", str(synthetic_folder), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "safe mode" in err and "--unsafe" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()

    # A model with its own layer class, not registered in the loading process: the class is named, the
    # config is not dumped; --custom-objects with the module that defines it loads it.
    import keras

    code = ("import keras\n\n@keras.saving.register_keras_serializable('MyPackage')\n"
            "class MyConv(keras.layers.Conv2D):\n    pass\n")
    module = tmp_path / "layers.py"
    module.write_text(code)
    from deeplab_edge.model.model_file import custom_objects_from

    MyConv = custom_objects_from(module)["MyConv"]
    inp = keras.Input((SIZE, SIZE, 3))
    keras.Model(inp, MyConv(4, 1)(keras.layers.Rescaling(1 / 255.0)(inp))).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("MyPackage>MyConv")
    custom = tmp_path / "custom.keras"
    rc = main(["export", str(custom), "--data", str(synthetic_folder), "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert rc == 2 and "MyConv" in err and "--custom-objects" in err and "Traceback" not in err
    assert len(err) < 400  # one line, no config dump

    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.foreign import LoadOptions

    model, _ = load_checkpoint(custom, options=LoadOptions(custom_objects=str(module)))
    assert model.output_shape == (None, SIZE, SIZE, 4)


def test_qat_from_keras3_is_refused_with_what_to_use(keras3_models, synthetic_folder, tmp_path, capsys):
    rc = main(["train", "--data", str(synthetic_folder), "--qat-from", str(keras3_models["keras3"]),
               "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert rc == 2 and "tf-keras" in err and "--auto-keep-float" in err and "Traceback" not in err


def test_savedmodel_with_dynamic_size_needs_or_takes_input_size(tmp_path, synthetic_folder, capsys):
    """A SavedModel whose signature takes any size: --input-size fixes it; without it, one clear line."""
    import tensorflow as tf

    class Seg(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal((1, 1, 3, 4), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="pixels")])
        def serve(self, pixels):
            x = tf.nn.conv2d(pixels / 255.0, self.w, 1, "SAME")
            return {"scores": x, "extra": tf.reduce_mean(x, axis=[1, 2])}

    seg = Seg()
    path = tmp_path / "dyn"
    tf.saved_model.save(seg, str(path), signatures={"serving_default": seg.serve})
    base = ["export", str(path), "--data", str(synthetic_folder), "--input-scale", "0-255", "--formats",
            "tflite_fp32", "--eval-images", "4", "--out", str(tmp_path / "x")]
    assert main(base) == 2
    assert "--output" in capsys.readouterr().err  # two outputs: which one is the scores
    assert main([*base, "--output-name", "scores"]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert main([*base, "--output-name", "scores", "--input-size", "48", "48"]) == 0, capsys.readouterr()
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["model"]["input_size"] == [48, 48] and manifest["files"][0]["verification"]["passed"]


def test_keras_hub_segmenter_says_its_preprocessing(tmp_path):
    """A keras-hub DeepLabV3ImageSegmenter (tiny ResNet, random weights): mean/std from its image converter's
    scale and offset, the size from its image_size, logits, no flags."""
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install keras-hub)")
    from deeplab_edge.export.spec import model_spec
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.keras_hub_deeplab import hub_segmenter

    path = tmp_path / "hub.keras"
    hub_segmenter(keras_hub, 48, 3).save(path)
    model, info = load_checkpoint(path)
    assert info is None and model.input_shape == (None, 48, 48, 3) and model.output_shape == (None, 48, 48, 3)
    spec = model_spec(model, None, None, checkpoint=path)
    np.testing.assert_allclose(spec.mean, (123.675, 116.28, 103.53), rtol=1e-5)
    np.testing.assert_allclose(spec.std, (58.395, 57.12, 57.375), rtol=1e-5)
    assert spec.output == "logits" and any("keras-hub" in n for n in spec.notes)


@pytest.mark.slow
def test_keras_hub_deeplabv3_resnet50_exports_verifies_and_benches(synthetic_folder, tmp_path, capsys):
    """keras-hub's DeepLabV3ImageSegmenter on ResNet50 (random weights, 256 px): saved, exported to the default
    formats with no flags, every file verified, and benched with the Keras 3 reference row."""
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install keras-hub)")
    from deeplab_edge.model.keras_hub_deeplab import hub_segmenter

    path = tmp_path / "deeplabv3_resnet50.keras"
    model = hub_segmenter(keras_hub, 256, 4, resnet50=True)
    assert model.count_params() > 35e6
    model.save(path)
    out = tmp_path / "exp"
    rc = main(["export", str(path), "--data", str(synthetic_folder), "--out", str(out), "--eval-images", "8",
               "--calibration-images", "16", "--allow-fail"])
    text = capsys.readouterr().out
    assert rc == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) == 6 and manifest["model"]["input_size"] == [256, 256]
    float_files = [f for f in manifest["files"] if f["precision"] in ("fp32", "fp16")]
    assert all(f["verification"]["passed"] for f in float_files), text  # random weights: int8 judged only below
    rc = main(["bench", str(out / "manifest.json"), "--data", str(synthetic_folder), "--eval-images", "4",
               "--min-runs", "3", "--min-time", "0.05", "--warmup", "1", "--out", str(tmp_path / "b"), "--device", "cpu"])
    assert rc == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]}
    assert rows["keras_fp32"]["status"] == "ok" and "keras-hub" in rows["keras_fp32"]["provider"]
    assert all(r["status"] == "ok" for r in rows.values() if r["device"] == "cpu")


def test_eval_takes_a_keras3_model_with_its_own_normalisation(keras3_models, synthetic_folder, tmp_path, capsys):
    rc = main(["eval", str(keras3_models["keras3"]), "--data", str(synthetic_folder), "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Rescaling" in out  # the normalisation it was evaluated with is said
    assert json.loads((tmp_path / "m.json").read_text())["miou"] > 0.5
