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


@pytest.mark.slow
def test_core_install_every_help_works_and_tf_commands_say_which_extra(tmp_path):
    """The board install: every subcommand's --help exits 0; the commands that need TensorFlow print one
    line naming `pip install 'deeplab-edge[train]'` and exit 2, never a traceback."""
    from deeplab_edge.cli import COMMANDS

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                   check=True, timeout=900)
    exe = str(venv / "bin" / "deeplab-edge")
    for name in COMMANDS:
        out = subprocess.run([exe, name, "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0 and "usage:" in out.stdout, (name, out.stderr)
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.keras", "w") as z:  # a well-formed archive: the extra is what is missing
        z.writestr("config.json", "{}")
        z.writestr("metadata.json", "{}")
    for argv in (["presets"], ["train"], ["demo"], ["data"], ["eval", "m.keras"], ["export", "m.keras"],
                 ["quant-report", "m.keras"], ["inspect", "m.keras"]):
        out = subprocess.run([exe, *argv], capture_output=True, text=True, cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, (argv, out.stderr)
        assert "pip install 'deeplab-edge[train]'" in lines[0] and "Traceback" not in out.stderr, argv
