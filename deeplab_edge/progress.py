"""Progress for long work on every install (no tqdm needed): step lines and a counter bar.

Step lines (`steps("export")`) print unless `-q`; the bar (`Bar`) draws only on a terminal's stderr and
never with `-q`, so logs and pipes get no carriage-return noise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from .logs import is_quiet


def steps(tag: str) -> Callable[[str], None]:
    """A progress callback that prints `[tag] message` lines (flushed), or does nothing with -q."""
    if is_quiet():
        return lambda message: None
    return lambda message: print(f"[{tag}] {message}", flush=True)


class Bar:
    """`done/total unit` on one terminal line, redrawn at most 10 times a second."""

    def __init__(self, total: int, desc: str, *, unit: str = "img", enabled: bool | None = None) -> None:
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, 0
        if enabled is None:
            enabled = total > 1 and not is_quiet() and _tty(sys.stderr)
        self.enabled = bool(enabled)
        self._start = self._drawn = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= 0.1 or self.done >= self.total):
            self._drawn = now
            rate = self.done / max(now - self._start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.1f}/s, {left:.0f} s left)  ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def track(items, desc: str, *, total: int | None = None, unit: str = "img", enabled: bool | None = None):
    """Yield from `items`, drawing a `Bar` as they go (see `Bar` for when it draws)."""
    total = len(items) if total is None else total
    with Bar(total, desc, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
