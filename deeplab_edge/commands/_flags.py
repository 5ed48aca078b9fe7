"""Library messages name Python parameters (`input_size`); the command line shows its flags instead."""

from __future__ import annotations

import argparse
import re

_ACTIVE: list[argparse.ArgumentParser] = []  # the running command's parser (one per process)


def use_parser(parser: argparse.ArgumentParser) -> None:
    """Say which command runs, so `as_flags` names that command's flags."""
    _ACTIVE[:] = [parser]


# Library parameters whose flag is not named after them (most are: `input_size` is --input-size).
PARAM_FLAGS = {"num_threads": "threads", "out_dir": "out"}


def as_flags(text: str, parser: argparse.ArgumentParser | None = None) -> str:
    """A library message names parameters as `name` (or `name=False`); on the command line they are the
    chosen command's flags: `input_size` -> --input-size, `pixel_input=False` -> --no-pixel-input.
    `parser` defaults to the running command's (`use_parser`)."""
    parser = parser or (_ACTIVE[0] if _ACTIVE else None)
    if parser is None:
        return text
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.help == argparse.SUPPRESS:
            continue
        flags.setdefault(action.dest, longs[0])
        for option in longs:
            flags.setdefault(option[2:].replace("-", "_"), option)

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        found = flags.get(name) or flags.get(PARAM_FLAGS.get(name, ""))
        if found is None:
            return m.group(0)
        if value == "=False":
            negative = flags.get(f"no_{found[2:].replace('-', '_')}")
            return negative or m.group(0)
        return found

    return re.sub(r"`([a-z_][a-z0-9_]*)(=False|=True)?`", flag, text)
