"""The runtime and `deeplab-edge predict` work where TensorFlow and Keras cannot be imported at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> rm.RuntimeModels:
    return rm.get_models(tmp_path_factory.mktemp("runtime_models"))


NO_TF_SCRIPT = r"""
import importlib.abc, json, sys

BLOCKED = {"tensorflow", "tf_keras", "keras"}

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, NoTensorFlow())

import numpy as np
from PIL import Image
import deeplab_edge.runtime as runtime
from deeplab_edge.cli import main

tflite, onnx, image, out = sys.argv[1:5]
img = runtime.load_image(image)
masks = {p: runtime.load_predictor(p).predict([img])[0] for p in (tflite, onnx)}
rc = main(["predict", tflite, image, "--out", out])
print(json.dumps({
    "shapes": [list(m.shape) for m in masks.values()],
    "agree": float(np.mean(masks[tflite] == masks[onnx])),
    "rc": rc,
    "blocked": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
}))
"""


def test_predict_without_tensorflow(models, tmp_path):
    photo = tmp_path / "coffee.png"
    Image.fromarray(rm.photos()["coffee"]).save(photo)
    proc = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, str(models.tflite), str(models.onnx), str(photo), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["blocked"] == []  # neither tensorflow nor keras got into sys.modules
    assert result["shapes"] == [[400, 600], [400, 600]]
    assert result["agree"] > 0.99
    assert result["rc"] == 0
    assert (tmp_path / "out" / "coffee_mask.png").exists()
    assert np.asarray(Image.open(tmp_path / "out" / "coffee_mask.png")).shape == (400, 600)


def test_source_checkout_on_sys_path_resolves_every_subpackage():
    """From the repository root (first on sys.path, as `python -c` there) with no editable finder (-S, as
    a non-editable install): the root's deeplab_edge/ shadows the installed package and must still
    find runtime/, model/, export/ and benchmarks/."""
    import numpy

    root = Path(__file__).resolve().parents[1]
    site = str(Path(numpy.__file__).resolve().parents[1])
    code = (f"import sys; sys.path[:0] = [{str(root)!r}]; sys.path.append({site!r}); "
            "import deeplab_edge.runtime.predictor, deeplab_edge.model.presets, deeplab_edge.export.formats, "
            "deeplab_edge.benchmarks.report, deeplab_edge.runtime as r; print(r.__file__)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.strip() == str(root / "runtime" / "__init__.py")


CORE_BENCH_SCRIPT = r"""
import importlib.abc, sys

BLOCKED = {"tensorflow", "tf_keras", "keras", "matplotlib", "imgviz", "skimage", "psutil"}

class CoreInstallOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, CoreInstallOnly())
from deeplab_edge.cli import main
sys.exit(main(["bench", sys.argv[1], "--out", sys.argv[2], "--min-runs", "3", "--min-time", "0.05",
               "--warmup", "1", "--device", "cpu"]))
"""


def test_bench_with_the_core_install_alone(models, tmp_path):
    """A board with `pip install deeplab-edge` (no matplotlib, no demo-set packages, empty cache): bench of
    a file with our metadata gives a latency row and says why there is no mIoU and no plot."""
    import os

    script = CORE_BENCH_SCRIPT
    env = {**os.environ, "DEEPLAB_EDGE_CACHE": str(tmp_path / "empty-cache")}
    proc = subprocess.run([sys.executable, "-c", script, str(models.tflite), str(tmp_path / "b")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "the built-in demo set is not available here" in proc.stdout and "no plots" in proc.stdout
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert [r["status"] for r in rows if r["device"] == "cpu"] == ["ok"] and rows[0]["latency"]["p50_ms"] > 0
