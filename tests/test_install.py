"""`pip install .` (non-editable) into a fresh virtual environment: the CLI works, nothing generic lands
in site-packages, and the runtime-only install has no TensorFlow. Slow (installs packages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pip_install_runtime_only_into_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                   check=True, timeout=900)
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    for generic in ("model", "runtime", "export", "benchmarks"):
        assert not (site / generic).exists(), generic
    assert not (site / "tensorflow").exists()  # the core install is the edge runtime
    out = subprocess.run([str(venv / "bin" / "deeplab-edge"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "predict" in out.stdout
    code = "import deeplab_edge.runtime as r, sys; assert 'tensorflow' not in sys.modules; print(r.ModelMetadata)"
    assert subprocess.run([str(py), "-c", code]).returncode == 0
