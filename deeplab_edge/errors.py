"""The one exception type for user mistakes: the CLI prints it without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix: bad input, a wrong option, a missing file."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean: a, b?' for close matches of `name`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> UserError:
    choices = sorted(choices)
    return UserError(
        f"Unknown {kind} {name!r}.{did_you_mean(name, choices)} Valid {kind}s: {', '.join(choices)}."
    )
