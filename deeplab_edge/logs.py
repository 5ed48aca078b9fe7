"""Quiet by default: the CLI hides the runtimes' own log lines unless `--verbose` is given.

`quiet_runtimes()` (called by the CLI) sets DEEPLAB_EDGE_QUIET=1 and the levels TensorFlow and
onnxruntime read; `held_stderr()` holds back the C++ lines that no level covers (TensorFlow's absl
lines at import, LiteRT's "Created TensorFlow Lite XNNPACK delegate") and replays them if the
wrapped code fails. Library users who never call `quiet_runtimes` see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

QUIET_ENV = "DEEPLAB_EDGE_QUIET"


def quiet_runtimes(*, onnxruntime: bool = False, verbose: bool = False) -> None:
    """Errors only from TensorFlow (set before it is imported) and, if asked, onnxruntime; with
    `verbose`, everything (also for child processes that inherited a quiet environment)."""
    if verbose:
        os.environ[QUIET_ENV] = "0"
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3":
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if onnxruntime:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)


@contextlib.contextmanager
def captured_stderr(sink: list[str]) -> Iterator[None]:
    """The process's stderr (fd 2, C++ included) goes to a temporary file for the block; its text is appended
    to `sink` afterwards (also when the block raises). A no-op where there is no real stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded interpreter, closed fd)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            sink.append(held.read().decode(errors="replace"))


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """When quiet: the process's stderr (fd 2, C++ included) is held back for the block (`captured_stderr`)
    and replayed if the block raises. Otherwise a no-op."""
    if os.environ.get(QUIET_ENV) != "1":
        yield
        return
    held: list[str] = []
    try:
        with captured_stderr(held):
            yield
    except BaseException:
        sys.stderr.write("".join(held))
        raise


PROGRESS_ENV = "DEEPLAB_EDGE_PROGRESS"  # "0": -q was given (inherited by worker processes)


def set_quiet(quiet: bool) -> None:
    """`-q`: no progress bars or step lines, here and in child processes."""
    os.environ[PROGRESS_ENV] = "0" if quiet else "1"


def is_quiet() -> bool:
    return os.environ.get(PROGRESS_ENV) == "0"
