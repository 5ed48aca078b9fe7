"""What every part of the aarch64 check shares: its two errors, its log line, the cache location and the
runner of the setup tools (apt-get, dpkg-deb, pip) whose failures become one-line `SetupError`s."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["REPO", "CheckError", "SetupError", "cache_root", "deeplab_cache", "log", "reason", "run_setup", "tail"]

REPO = Path(__file__).resolve().parents[2]  # the checkout (editable install): the default --source


class SetupError(Exception):
    """The environment cannot be built; the message is one line naming what is missing and the fix."""


class CheckError(Exception):
    """The check cannot run on what it was given (no manifest, no photos, the x86 reference failed)."""


def log(msg: str) -> None:
    print(f"[aarch64] {msg}", flush=True)


def deeplab_cache() -> Path:
    """$DEEPLAB_EDGE_CACHE, else ~/.cache/deeplab-edge (where the built-in demo set is made)."""
    return Path(os.environ.get("DEEPLAB_EDGE_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab-edge")


def cache_root() -> Path:
    """$DEEPLAB_EDGE_AARCH64_ROOT, else <deeplab-edge cache>/aarch64 (~/.cache/deeplab-edge/aarch64)."""
    if os.environ.get("DEEPLAB_EDGE_AARCH64_ROOT"):
        return Path(os.environ["DEEPLAB_EDGE_AARCH64_ROOT"]).expanduser()
    if os.environ.get("DEEPLAB_EDGE_CACHE"):
        return Path(os.environ["DEEPLAB_EDGE_CACHE"]) / "aarch64"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab-edge" / "aarch64"


_IGNORED = "is ignored: it is neither a file nor a directory"  # noise, never the reason
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Name or service not known",
            "Network is unreachable", "Could not resolve", "Connection refused", "Failed to fetch", "timed out")


def tail(text: str | bytes | None, n: int = 1) -> str:
    """The last `n` non-empty lines of a tool's output, joined with " | " (at most 400 characters)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if _IGNORED not in ln] or lines
    return " | ".join(lines[-n:])[:400] if lines else ""


def reason(text: str) -> str:
    """The most telling line of a failed tool's output: a network failure, else its first error line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if _IGNORED not in ln]
    for ln in lines:
        if any(k in ln for k in _OFFLINE):
            return "no network? " + ln[:300]
    errors = [ln for ln in lines if ln.startswith(("ERROR:", "E:")) and "ResolutionImpossible" not in ln]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]


def run_setup(cmd: list[str], what: str, fix: str, **kw) -> subprocess.CompletedProcess:
    """Run a setup tool; SetupError "`what` failed (exit N: reason). `fix`" when it cannot run or fails."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise SetupError(f"{what}: cannot run {cmd[0]} ({e.strerror}). {fix}") from None
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}: {reason(proc.stderr + proc.stdout)}). {fix}")
    return proc
