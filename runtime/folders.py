"""Segment files and folders of images with an exported model: `<stem>_mask.png` and `<stem>_overlay.png`.

Every PNG is written under a temporary name and renamed, so a crash never leaves a half-written file.
A bad image is reported and skipped; the others are still processed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab_edge.errors import UserError
from deeplab_edge.fileio import atomic_path
from deeplab_edge.progress import Bar

from .images import Skipped, load_image, scan_images
from .predictor import Predictor, load_predictor
from .stages import TimingSummary, summarize
from .visualize import class_name, mask_image, overlay_image


@dataclass(frozen=True)
class Failure:
    path: Path
    reason: str


@dataclass(frozen=True)
class Written:
    image: Path
    mask: Path
    overlay: Path | None
    classes: tuple[str, ...]  # names of the classes present in the mask


@dataclass(frozen=True)
class PredictSummary:
    model: Path
    backend: str
    providers: tuple[str, ...]
    out_dir: Path
    written: tuple[Written, ...]
    failed: tuple[Failure, ...]
    timing: TimingSummary
    notes: tuple[str, ...] = field(default_factory=tuple)
    threads: int | None = None
    skipped: tuple[Skipped, ...] = ()  # folder entries not taken as images (named, with the reason)

    @property
    def ok(self) -> bool:
        return not self.failed

    def failures_text(self) -> str:
        """The failed images, one line each (each reason names its file)."""
        return "\n".join([f"{len(self.failed)} image(s) failed:", *(f"  {f.reason}" for f in self.failed)])

    def to_text(self, *, failures: bool = True) -> str:
        threads = f", {self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        lines = [f"model: {self.model} on {self.backend} ({', '.join(self.providers)}{threads})",
                 *(f"note: {n}" for n in self.notes),
                 f"wrote {len(self.written)} mask(s)"
                 f"{' and overlay(s)' if any(w.overlay for w in self.written) else ''} to {self.out_dir}"]
        if self.written:
            lines.append(self.timing.to_text())
        if self.skipped:
            lines.append(self.skipped_text())
        if failures and self.failed:
            lines.append(self.failures_text())
        return "\n".join(lines)

    def skipped_text(self) -> str:
        """The folder entries that were not images, one line each with the reason."""
        return "\n".join([f"skipped {len(self.skipped)} folder entr{'y' if len(self.skipped) == 1 else 'ies'} "
                          "that are not images:", *(f"  {s.reason}" for s in self.skipped)])


def predict_paths(model_path: str | Path, inputs: Iterable[str | Path], out_dir: str | Path, *,
                  backend: str | None = None, num_threads: int | None = None,
                  providers: str | Sequence[str] | None = None, input_size: Sequence[int] | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  class_names: str | Sequence[str] | None = None, batch_size: int = 1, overlay: bool = True,
                  progress: bool | None = None, predictor: Predictor | None = None, threshold: float | None = None,
                  output: str | None = None, output_kind: str | None = None,
                  resample: str = "pillow", upsample: str = "labels", device: str = "cpu",
                  gpu_precision: str = "fp32") -> PredictSummary:
    """Segment every image in `inputs` (files or folders) and write mask and overlay PNGs to `out_dir`.

    Model and option mistakes raise UserError before any image is read; an unreadable image is recorded
    in the summary's `failed` and the others go on. `progress=None` shows a bar for more than one image
    on a terminal (`deeplab_edge.progress.Bar`). Every folder entry that is not taken is named: a broken link
    that looks like an image in `failed`, anything else (hidden, other suffix, subfolder) in `skipped`.
    """
    paths, skipped = scan_images(inputs)
    out_dir = _prepare_out_dir(Path(out_dir))
    if predictor is None:
        predictor = load_predictor(model_path, backend=backend, num_threads=num_threads, providers=providers,
                                   input_size=input_size, mean=mean, std=std, class_names=class_names,
                                   batch_size=batch_size, threshold=threshold, output=output,
                                   output_kind=output_kind, resample=resample, upsample=upsample, device=device,
                                   gpu_precision=gpu_precision)
    predictor.timings.clear()  # the summary covers this call
    stems = _output_stems(paths)
    written: list[Written] = []
    failed: list[Failure] = [Failure(s.path, s.reason) for s in skipped if s.failure]
    bar = Bar(len(paths), "predict", enabled=None if progress is None else progress)
    step = max(1, int(batch_size))
    for start in range(0, len(paths), step):
        loaded = []
        for p in paths[start:start + step]:
            try:
                loaded.append((p, load_image(p)))
            except UserError as e:
                failed.append(Failure(p, str(e)))
        if loaded:
            masks = predictor.predict([img for _, img in loaded])
            for (p, img), mask in zip(loaded, masks, strict=True):
                try:
                    written.append(_write(p, out_dir / stems[p], img, mask, predictor.class_names, overlay))
                except OSError as e:
                    failed.append(Failure(p, f"Cannot write the outputs of {p} to {out_dir}: {e.strerror or e}."))
        bar.update(len(paths[start:start + step]))
    bar.close()
    b = predictor.backend
    return PredictSummary(Path(model_path), b.name, tuple(b.providers), out_dir, tuple(written), tuple(failed),
                          summarize(predictor.timings), (*getattr(b, "notes", ()), *predictor.notes),
                          getattr(b, "num_threads", None), tuple(s for s in skipped if not s.failure))


def _prepare_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"`out_dir` {out_dir} is a file; pass a folder for the mask and overlay PNGs.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the output folder {out_dir}: {e.strerror or e}.") from None
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"The output folder {out_dir} is not writable; pass another `out_dir`.")
    return out_dir


def _output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output name stems: the file stem, or stem_suffix / stem_N when two inputs share a stem."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    for p in paths:
        stem = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'img'}"
        base, n = stem, 2
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        stems[p] = stem
    return stems


def _write(src: Path, stem: Path, image: np.ndarray, mask: np.ndarray, class_names: Sequence[str],
           overlay: bool) -> Written:
    mask_path = stem.with_name(f"{stem.name}_mask.png")
    save_png_atomic(mask_image(mask), mask_path)
    overlay_path = None
    if overlay:
        overlay_path = stem.with_name(f"{stem.name}_overlay.png")
        save_png_atomic(overlay_image(image, mask, class_names), overlay_path)
    present = tuple(class_name(class_names, int(v)) for v in np.unique(mask))
    return Written(src, mask_path, overlay_path, present)


def save_png_atomic(im: Image.Image, path: Path) -> None:
    """Save a PNG through `deeplab_edge.fileio.atomic_path` (never half-written under its name)."""
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
