"""The class-name rules every layer uses: how a list is given, and the names when none are given."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UserError


def parse_class_names(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """Names from a comma-separated string or a sequence; () for None or empty. An empty name is refused."""
    if not names:
        return ()
    items = names.split(",") if isinstance(names, str) else list(names)
    out = tuple(str(n).strip() for n in items)
    if any(not n for n in out):
        raise UserError(f"Class names must not be empty; received {names!r}. Example: `class_names` "
                        "background,cat,dog.")
    return out


def default_class_names(channels: int) -> tuple[str, ...]:
    """The names used when none are given: background/foreground for one score channel, else class_i."""
    return ("background", "foreground") if channels == 1 else tuple(f"class_{i}" for i in range(channels))


def classes_of(channels: int) -> int:
    """Classes of a score output: a one-channel (foreground score) output has two."""
    return 2 if channels == 1 else channels
