"""What an exported file must say about the model: classes, normalisation, output kind.

For a checkpoint trained here they come from its model info. A tf-keras model built elsewhere says
none of it, so it comes from flags (`--class-names`, `--mean/--std` or `--input-scale`), a sidecar
JSON beside the model (`MODEL.json` with the same keys), or the dataset's class names; an unknown
normalisation is an error, never a silent guess, because calibration, verification and the metadata
every runtime reads all depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.classes import classes_of, default_class_names, parse_class_names
from deeplab_edge.errors import UserError, unknown_name_error

# Common input conventions: (mean, std) on 0..255 RGB pixels, normalised as (pixel - mean) / std.
INPUT_SCALES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "signed": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # x / 127.5 - 1: [-1, 1]
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # x / 255: [0, 1]
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # 0..255 as they are
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}
# The range spellings (the first names): "-1-1" starts with "-", which a shell and argparse read as an option.
INPUT_SCALE_ALIASES = {"-1-1": "signed", "0-1": "unit", "0-255": "raw"}


@dataclass(frozen=True)
class ModelSpec:
    """The facts about a model that its exported files carry and that export relies on."""

    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str  # "logits" or "probabilities"
    channels: int  # output channels: len(class_names), or 1 for a foreground score
    threshold: float = 0.5
    notes: tuple[str, ...] = ()

    def labels(self, scores):
        """(N, H, W, C) float scores -> (N, H, W) labels: argmax, or the threshold for one channel."""
        from deeplab_edge.runtime.kernels import scores_to_labels

        return scores_to_labels(scores, self.output, self.threshold)


def output_kind(model) -> str:
    """"probabilities" when the Keras model's last layer applies softmax or sigmoid, else "logits"."""
    from deeplab_edge.model.foreign import layer_output_kind, source_of

    source = source_of(model)
    if source is not None:  # a Keras 3 model or a SavedModel: read when it was loaded
        return source.output_kind
    return layer_output_kind(model.layers[-1])


def model_spec(model, info, dataset, *, checkpoint: str | Path | None = None,
               class_names: Sequence[str] | str | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, input_scale: str | None = None) -> ModelSpec:
    """The spec of `model` (from `load_checkpoint`): flags, then the sidecar JSON or model info, then the
    dataset's class names. `dataset` may be None when no data is at hand."""
    from deeplab_edge.model.foreign import source_of

    notes: list[str] = []
    channels = int(model.output_shape[-1])
    source = source_of(model)
    if source is not None:
        notes.append(f"loaded as {source.framework}")
    sidecar = _sidecar(checkpoint) if info is None else {}
    if input_scale is not None and (mean is not None or std is not None):
        raise UserError("Pass either `input_scale` or `mean`/`std`, not both.")
    scale = input_scale or sidecar.get("input_scale")
    if scale is not None:
        scale = INPUT_SCALE_ALIASES.get(str(scale), scale)
        if scale not in INPUT_SCALES:
            raise unknown_name_error("input scale", str(scale), [*INPUT_SCALES, *INPUT_SCALE_ALIASES])
        mean, std = INPUT_SCALES[scale]
    if mean is None and std is None and "mean" in sidecar:
        mean, std = sidecar.get("mean"), sidecar.get("std")
    if (mean is None) != (std is None):
        raise UserError("Pass both `mean` and `std` (three values each, on 0..255 pixels).")
    if mean is None and source is not None and source.mean is not None:
        mean, std = source.mean, source.std
        notes.append(f"normalisation from {source.normalisation_from} (mean {' '.join(f'{v:g}' for v in mean)}, "
                     f"std {' '.join(f'{v:g}' for v in std)} on 0..255 pixels); override with `input_scale` or "
                     "`mean`/`std`")
    if mean is None:
        if info is None:
            raise UserError(
                f"{checkpoint or 'The model'} was not trained by deeplab-edge, so its input normalisation is "
                "unknown, and calibration, verification and the files' metadata all depend on it. Say how it "
                f"was trained: `input_scale` {{{', '.join(INPUT_SCALES)}}}, or `mean` R G B `std` R G B "
                "(on 0..255 pixels), or a sidecar JSON beside the model "
                f"({_sidecar_path(checkpoint) if checkpoint else 'MODEL.json'}) with \"mean\" and \"std\".")
        mean, std = info.mean, info.std
    mean, std = _three("mean", mean), _three("std", std)
    if min(std) <= 0:
        raise UserError(f"std must be positive; received {std}.")
    names = parse_class_names(class_names) or parse_class_names(sidecar.get("class_names")) or (info.class_names if info else ())
    if not names and dataset is not None:
        names = tuple(dataset.class_names)
        notes.append(f"class names from the dataset {dataset.root}: {', '.join(names)}")
    expected = classes_of(channels)
    if not names:
        names = default_class_names(channels)
        notes.append(f"no class names given: using {', '.join(names)} (pass `class_names`)")
    if len(names) != expected:
        what = "one foreground channel, so 2 classes" if channels == 1 else f"{channels} classes"
        raise UserError(f"The model outputs {what}, but {len(names)} class names were given "
                        f"({', '.join(names)}); pass {expected} names to `class_names`.")
    kind = "logits" if info is not None else output_kind(model)
    if info is None:
        notes.append(f"the model outputs {kind}"
                     + (" (one foreground channel, thresholded at 0.5)" if channels == 1 else ""))
    return ModelSpec(tuple(names), mean, std, kind, channels, notes=tuple(notes))


def _sidecar_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def _sidecar(checkpoint: str | Path | None) -> dict:
    if checkpoint is None or not _sidecar_path(checkpoint).is_file():
        return {}
    path = _sidecar_path(checkpoint)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"The sidecar {path} is not readable JSON ({e}); fix or remove it.") from None
    if not isinstance(data, dict):
        raise UserError(f"The sidecar {path} must hold a JSON object with mean, std, class_names or input_scale.")
    return data


def _three(what: str, values) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in (values if isinstance(values, (list, tuple)) else [values]))
    except (TypeError, ValueError):
        raise UserError(f"{what} must be numbers; received {values!r}.") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise UserError(f"{what} needs 1 or 3 values (R G B); received {values}.")
    return values
