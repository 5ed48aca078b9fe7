"""The GPU path on a real Vulkan device: LiteRT's GPU accelerator (WebGPU over Vulkan), on SwiftShader where
the machine has no GPU (`make test` installs it; `deeplab-edge gpu --install-swiftshader`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_models import photos

from deeplab_edge.cli import main
from deeplab_edge.errors import UserError
from deeplab_edge.runtime.vulkan import find_vulkan, swiftshader_dir

VULKAN = find_vulkan()
needs_vulkan = pytest.mark.skipif(
    VULKAN is None, reason=f"no Vulkan device (no GPU driver, no SwiftShader in {swiftshader_dir()}: "
                           "`deeplab-edge gpu --install-swiftshader` needs Debian's apt-get)")


@pytest.fixture(scope="module")
def files(exported):
    return {f.format: f.path for f in exported[0].files}


@needs_vulkan
@pytest.mark.parametrize("fmt, min_agreement", [("tflite_fp32", 0.999), ("tflite_fp16", 0.995)])
def test_gpu_masks_equal_the_cpu_masks(files, fmt, min_agreement):
    from deeplab_edge.runtime import load_predictor

    cpu = load_predictor(files[fmt])
    gpu = load_predictor(files[fmt], device="gpu")
    info = gpu.backend.gpu
    assert info.fully_accelerated and info.adapter and info.precision == "fp32"
    assert info.emulated == VULKAN.software  # SwiftShader is said to be one, a hardware GPU is not
    assert gpu.backend.providers[0].startswith("LiteRT GPU fp32: ")
    images = list(photos().values())
    a = np.concatenate([m.ravel() for m in cpu.predict(images)])
    b = np.concatenate([m.ravel() for m in gpu.predict(images)])
    assert a.shape == b.shape
    assert np.mean(a == b) >= min_agreement, (fmt, np.mean(a == b))
    raw_cpu = cpu.run(cpu.prepare(images[:1])[0])
    raw_gpu = gpu.run(gpu.prepare(images[:1])[0])
    assert np.abs(raw_cpu - raw_gpu).max() < 1e-3 * max(1.0, float(np.abs(raw_cpu).max()))


@needs_vulkan
def test_a_file_the_gpu_cannot_take_is_refused_not_run_on_the_cpu(tmp_path, files):
    """An int64 ArgMax (no GPU kernel): the accelerator's own reason, never a CPU run under a GPU label; an int8
    file is refused the same way."""
    import tensorflow as tf

    from deeplab_edge.runtime.backends import open_backend

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 3), tf.float32)])
        def __call__(self, x):
            return tf.cast(tf.math.argmax(tf.nn.relu(x) + 1.0, axis=-1, output_type=tf.int64), tf.float32)[..., None]

    net = Net()
    path = tmp_path / "argmax.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net).convert())
    with pytest.raises(UserError, match="ARG_MAX"):
        open_backend(path, device="gpu")
    with pytest.raises(UserError, match="not reported as a GPU run|cannot run"):
        open_backend(files["tflite_int8"], device="gpu")


def test_no_vulkan_device_is_a_clear_error(tmp_path, monkeypatch, files):
    import deeplab_edge.runtime.vulkan as vulkan
    from deeplab_edge.runtime.backends import open_backend

    monkeypatch.setenv("DEEPLAB_EDGE_SWIFTSHADER", str(tmp_path / "none"))
    monkeypatch.setattr(vulkan, "system_icds", lambda: ())
    assert vulkan.find_vulkan() is None
    with pytest.raises(UserError, match="No Vulkan device.*--install-swiftshader"):
        open_backend(files["tflite_fp32"], device="gpu")


@needs_vulkan
def test_bench_writes_gpu_rows_with_adapter_and_cold_start(files, synthetic_folder, tmp_path, capsys):
    rc = main(["bench", *(str(files[f]) for f in ("tflite_fp32", "tflite_fp16", "tflite_int8")), "--data", str(synthetic_folder), "--eval-images", "8",
               "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--threads", "2", "--out", str(tmp_path / "b")])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]}
    for name in ("tflite_fp32_gpu", "tflite_fp16_gpu"):
        r = rows[name]
        assert r["status"] == "ok" and r["device"] == "gpu", r
        assert r["gpu"]["adapter"] and r["gpu"]["fully_accelerated"] and r["gpu"]["emulated"] == VULKAN.software
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["latency"]["p50_ms"] > 0 and r["threads"] is None
        assert r["agreement"] >= 0.995 and abs(r["miou"] - rows[name.removesuffix("_gpu")]["miou"]) < 0.01
    assert rows["tflite_fp32_gpu"]["gpu"]["precision"] == "fp32" and rows["tflite_fp16_gpu"]["gpu"]["precision"] == "fp16"
    md = (tmp_path / "b" / "bench.md").read_text()
    if VULKAN.software:
        assert "gpu (emulated)" in md and "latency is not a GPU's" in md
    # int8 rows stay on the CPU: quantised CPU beside float GPU
    assert rows["tflite_int8"]["device"] == "cpu" and "tflite_int8_gpu" not in rows


def test_gpu_command_reports_the_device(files, capsys):
    rc = main(["gpu", str(files["tflite_fp32"])] if VULKAN else ["gpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "Vulkan (LiteRT GPU)" in out and "onnxruntime" in out
    if VULKAN:
        assert "adapter: " in out and "runs fully on LiteRT GPU" in out
