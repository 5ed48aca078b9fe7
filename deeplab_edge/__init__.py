"""deeplab-edge: DeepLabV3+ from Keras training to TFLite/ONNX on the edge.

This top-level module stays light: importing it never imports TensorFlow, so the
TF-free runtime (`deeplab_edge.runtime`) works on a board without it.

Layout: the subpackages live in the repository's top-level folders (model/, export/, runtime/,
benchmarks/) and install as deeplab_edge.model, .export, .runtime, .benchmarks (pyproject's
package-dir). Run from a source checkout (the repository root first on sys.path, as with
`python -c ...` there) this folder shadows an installed copy; the root is then added to this
package's search path so the subpackages resolve to the checkout's folders, never half-installed.
"""

from __future__ import annotations

from pathlib import Path as _Path

_here = _Path(__file__).resolve().parent
if not (_here / "runtime").is_dir() and (_here.parent / "pyproject.toml").is_file() \
        and (_here.parent / "runtime" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # a source checkout: deeplab_edge.runtime -> <root>/runtime

__version__ = "0.1.0"
__all__ = ["__version__"]
