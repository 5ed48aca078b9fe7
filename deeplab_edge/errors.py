"""The one exception type for user mistakes: the CLI prints it without a traceback."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix: bad input, a wrong option, a missing file. Every error the library raises
    for its caller's input is this or a subclass; its message says what was received and what to do."""


class ModelFileError(UserError):
    """A model file that cannot be used: missing, of the wrong kind, damaged, or not loadable by its runtime."""


class ImageError(UserError):
    """An image that cannot be read or used: missing, not an image, corrupt, too small or too large."""


class MissingPackage(UserError):
    """An optional package the chosen option needs is not installed; the message names the pip install."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean: a, b?' for close matches of `name`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> UserError:
    choices = sorted(choices)
    return UserError(
        f"Unknown {kind} {name!r}.{did_you_mean(name, choices)} Valid {kind}s: {', '.join(choices)}."
    )


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another output folder",
    errno.EACCES: "permission denied: choose a folder you can write to (e.g. --out under your home)",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "a folder was given where a file is needed: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or process fewer files at once",
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError the user can act on: what failed, on which path, and what to do."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p)
    what = e.strerror or str(e) or type(e).__name__
    hint = _OS_HINTS.get(e.errno or -1)
    return f"{what}{f': {paths}' if paths else ''}" + (f" ({hint})." if hint else ".")


def memory_error_message(command: str) -> str:
    return (f"`{command}` ran out of memory. Use smaller batches (--batch-size), a smaller input size or "
            "fewer images at once, or run on a machine with more RAM.")
