"""PNG charts of a `BenchReport`: latency vs mIoU, and p50/p99 latency per row.

matplotlib is imported inside each function and drives its Agg canvas directly (no pyplot, so no
global backend switch and no window). Skipped and failed rows are left out of the axes and named
in a footnote. Files are written atomically: rendered to a temporary file, then os.replace.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from deeplab_edge.errors import UserError

from .results import BenchReport, BenchRow
from .sysinfo import machine_summary

__all__ = ["plot_latency_bars", "plot_latency_vs_miou"]

DPI = 120
# backend -> (marker, colour); anything else gets the fallback.
_STYLE = {"keras": ("o", "#4C72B0"), "litert": ("s", "#DD8452"), "onnxruntime": ("^", "#55A868")}
_FALLBACK_STYLE = ("D", "#8172B3")


def plots_available() -> bool:
    """Whether matplotlib is installed (the core install, e.g. on a board, has no plots)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("Plots need matplotlib, which is not installed: pip install 'deeplab-edge[runtime]' "
                        "(or pip install matplotlib).") from None
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _footnote(report: BenchReport, excluded: list[tuple[BenchRow, str]]) -> str:
    not_run = [f"{r.name} ({r.status}: {' '.join(r.reason.split())[:60]})" for r in report.rows if not r.ok]
    missing = [f"{r.name} ({why})" for r, why in excluded]
    parts = []
    if not_run:
        parts.append("Not shown, not run: " + "; ".join(not_run))
    if missing:
        parts.append("Not shown: " + "; ".join(missing))
    return "\n".join(parts)


def _finish(fig, title: str, report: BenchReport, footnote: str, path: str | os.PathLike) -> Path:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    subtitle = machine_summary(report.machine, threads=report.settings.get("threads"))
    fig.axes[0].set_title(subtitle, fontsize=8, color="#555555")
    bottom = 0.0
    if footnote:
        width_chars = int(fig.get_figwidth() * 72 / (0.55 * 7))  # 7 pt text
        lines = [w for line in footnote.splitlines() for w in textwrap.wrap(line, width_chars)]
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="#555555", ha="left", va="bottom")
        bottom = (len(lines) * 7 * 1.3 + 8) / 72 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    """Save atomically (deeplab_edge.fileio: a temporary name, renamed when complete)."""
    from deeplab_edge.fileio import atomic_path

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI)  # the tmp name has no image suffix: pass the format
    return path


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _label_points(ax, points: list[tuple[str, float, float]], fontsize: int = 8) -> None:
    """Annotate each (label, x, y), choosing per label the first of a few offsets whose (estimated)
    box overlaps no label placed before, so close points stay readable."""
    ax.autoscale_view()
    to_px = ax.transData.transform
    char_w, h = 0.6 * fontsize, 1.2 * fontsize  # points; px == points at 72 dpi, scaled below
    scale = ax.figure.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    for label, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
        w = char_w * len(label)
        px, py = to_px((x, y)) / scale
        candidates = [(6, 4), (6, -4 - h), (-6 - w, 4), (-6 - w, -4 - h), (6, 6 + h), (6, -6 - 2 * h),
                      (-6 - w, 6 + h), (-6 - w, -6 - 2 * h)]
        for dx, dy in candidates:
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                break
        else:
            dx, dy = candidates[0]
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
        placed.append(box)
        ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                    va="bottom", ha="left", arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5})


def plot_latency_vs_miou(report: BenchReport, path: str | os.PathLike) -> Path:
    """Scatter of p50 inference latency (ms, x) against mIoU (%, y), one marker per backend.

    Each point is labelled with its row name; x is logarithmic when the slowest row is more than
    10x the fastest. Rows without latency or mIoU are named in the footnote.
    """
    fig = _figure(8.0, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    shown: list[BenchRow] = []
    excluded: list[tuple[BenchRow, str]] = []
    for r in report.rows:
        if not r.ok:
            continue
        if r.p50_ms is None or r.miou is None:
            excluded.append((r, "no latency" if r.p50_ms is None else "no mIoU"))
        else:
            shown.append(r)
    if shown:
        for backend in dict.fromkeys(r.backend for r in shown):
            marker, colour = _STYLE.get(backend, _FALLBACK_STYLE)
            pts = [r for r in shown if r.backend == backend]
            ax.scatter([r.p50_ms for r in pts], [r.miou * 100 for r in pts], marker=marker, s=60,
                       color=colour, edgecolors="black", linewidths=0.5, label=backend, zorder=3)
        lats = [r.p50_ms for r in shown]
        if min(lats) > 0 and max(lats) / min(lats) > 10:
            ax.set_xscale("log")
            ax.set_xlabel("p50 inference latency per image (ms, log scale)  ← faster")
        else:
            ax.set_xlabel("p50 inference latency per image (ms)  ← faster")
            ax.set_xlim(left=0, right=max(lats) * 1.25)
        ax.margins(y=0.15)
        _label_points(ax, [(r.name, r.p50_ms, r.miou * 100) for r in shown])
        ax.set_ylabel("mIoU (%)  ↑ more accurate")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="backend", fontsize=8, title_fontsize=8, loc="best")
    else:
        _empty(ax, "no row has both a latency and an mIoU")
    return _finish(fig, "Latency vs accuracy", report, _footnote(report, excluded), path)


def plot_latency_bars(report: BenchReport, path: str | os.PathLike) -> Path:
    """Horizontal bars of p50 inference latency per row (fastest on top), whiskers up to p99."""
    shown = sorted((r for r in report.rows if r.ok and r.latency), key=lambda r: r.p50_ms)
    excluded = [(r, "no latency") for r in report.rows if r.ok and not r.latency]
    fig = _figure(8.0, max(3.0, 1.4 + 0.45 * len(shown)))
    ax = fig.add_subplot(1, 1, 1)
    if shown:
        y = list(range(len(shown)))
        p50 = [r.latency.p50_ms for r in shown]
        p99 = [r.latency.p99_ms for r in shown]
        colours = [_STYLE.get(r.backend, _FALLBACK_STYLE)[1] for r in shown]
        ax.barh(y, p50, color=colours, height=0.6, zorder=2,
                xerr=[[0] * len(shown), [max(0.0, b - a) for a, b in zip(p50, p99, strict=True)]],
                error_kw={"ecolor": "black", "capsize": 3, "elinewidth": 1})
        for yi, a, b in zip(y, p50, p99, strict=True):
            ax.text(max(a, b), yi, f"  {a:.2f} ms (p99 {b:.2f})", va="center", fontsize=8)
        ax.set_yticks(y, [f"{r.name} [{r.backend}/{r.device}]" for r in shown], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(p99 + p50) * 1.4)
        ax.set_xlabel("inference latency per image (ms): bar = p50, whisker = p99")
        ax.grid(True, axis="x", alpha=0.3, zorder=0)
        from matplotlib.patches import Patch

        handles = [Patch(color=_STYLE.get(b, _FALLBACK_STYLE)[1], label=b)
                   for b in dict.fromkeys(r.backend for r in shown)]
        ax.legend(handles=handles, title="backend", fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
    else:
        _empty(ax, "no row has a measured latency")
    return _finish(fig, "Inference latency per model", report, _footnote(report, excluded), path)
