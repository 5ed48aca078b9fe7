"""A training run's folder: its checkpoints, whether training resumes there, log.csv (a row per epoch,
written by Keras' CSVLogger) and curves.png."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.errors import UserError

from .checkpoint import read_info
from .presets import DeepLabConfig


def read_log(path: Path) -> list[dict]:
    """The rows of a run's log.csv, one dict per epoch; [] when there is none yet."""
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class RunFolder:
    """A training run's folder (best.keras, last.keras, log.csv) and the epoch training starts at in it."""

    out: Path
    resuming: bool = False
    initial_epoch: int = 0

    @property
    def best(self) -> Path:
        return self.out / "best.keras"

    @property
    def last(self) -> Path:
        return self.out / "last.keras"

    @property
    def log(self) -> Path:
        return self.out / "log.csv"


def open_run(out: Path, config: DeepLabConfig, *, resume: bool, epochs: int) -> RunFolder:
    """The run in `out`: a new one, or (`resume`) the one there; refuses to overwrite a run, and to resume
    one trained with another config or with no epochs left of `epochs`."""
    run = RunFolder(out)
    resuming = resume and run.last.exists()
    if not resume and (run.best.exists() or run.last.exists()):
        raise UserError(f"{out} already holds a training run. Pass `resume` to continue it, or choose another `out_dir`.")
    initial_epoch = len(read_log(run.log)) if resuming else 0
    if resuming:
        saved = read_info(run.last)
        if saved is not None and saved.config != config:
            diff = {k: v for k, v in saved.config.to_dict().items() if config.to_dict().get(k) != v}
            raise UserError(f"The run in {out} was trained with {diff}; resume it with the same preset and "
                            "model flags (or start a new run with another `out_dir`).")
        if initial_epoch >= epochs:
            raise UserError(f"{out} already ran {initial_epoch} epoch(s) of {epochs}; raise `epochs` to go on.")
    return RunFolder(out, resuming, initial_epoch)


def plot_curves(log_csv: Path, out_png: Path) -> Path | None:
    """Loss and mean IoU per epoch (train and validation) from `log_csv` as a PNG; None without rows."""
    rows = read_log(log_csv)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) + 1 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if key in rows[0]:
            a.plot(ep, [float(r[key]) for r in rows], marker="o", label=label)
    a.set(title="Loss (cross-entropy, ignore=255)", xlabel="epoch", ylabel="loss")
    a.legend()
    for key, label in (("miou", "train"), ("val_miou", "validation")):
        if key in rows[0]:
            b.plot(ep, [100 * float(r[key]) for r in rows], marker="o", label=label)
    b.set(title="mean IoU", xlabel="epoch", ylabel="mIoU (%)")
    b.legend()
    fig.tight_layout()
    from deeplab_edge.fileio import atomic_path

    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_png

