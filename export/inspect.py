"""`inspect_keras`: the contract of a Keras checkpoint or SavedModel, in `runtime.inspect.Contract`'s terms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deeplab_edge.errors import UserError
from deeplab_edge.runtime.inspect import Contract, Tensor


def inspect_keras(path: str | Path, options=None) -> Contract:
    """What a `.keras`/`.h5` checkpoint or SavedModel takes and gives (loaded with `load_checkpoint`)."""
    from deeplab_edge.model.checkpoint import load_checkpoint

    from .spec import model_spec

    path = Path(path)
    model, info = load_checkpoint(path, options=options)
    notes: list[str] = []
    try:
        spec = model_spec(model, info, None, checkpoint=path)
        notes += spec.notes
        mean, std, names, output = spec.mean, spec.std, spec.class_names, spec.output
    except UserError as e:  # a foreign model whose normalisation nobody states
        notes.append(str(e))
        mean = std = None
        names, output = (), "logits"
    h, w = model.input_shape[1:3]
    channels = int(model.output_shape[-1])
    kind = f"foreground {'logit' if output == 'logits' else 'probability'}" if channels == 1 else output
    out_hw = model.output_shape[1:3]
    stride = int(round(h / out_hw[0])) if h and out_hw[0] else None
    norm = (f"(pixel - mean) / std with mean {' '.join(f'{v:g}' for v in mean)} and std "
            f"{' '.join(f'{v:g}' for v in std)} on RGB 0..255 pixels" if mean is not None else "an unstated normalisation")
    size = (int(h), int(w)) if h and w else None
    def tensors(ts) -> tuple[Tensor, ...]:
        return tuple(Tensor(t.name, tuple(t.shape), str(t.dtype).replace("<dtype: '", "").rstrip("'>")) for t in ts)
    at = "" if stride in (None, 1) else f" at 1/{stride} of the input's resolution"
    out_text = (f"one channel, a {kind}: foreground where it is at least {'0 (logit)' if output == 'logits' else '0.5'}"
                if channels == 1 else f"{channels} channels of {output} (NHWC); the label is their argmax") + at
    source = "SavedModel" if path.is_dir() else "Keras checkpoint"
    return Contract(
        path=str(path), kind="keras", size_bytes=_size(path), inputs=tensors(model.inputs),
        outputs=tensors(model.outputs), output_used=model.outputs[0].name,
        input_text=f"float32 RGB (N, {h or 'H'}, {w or 'W'}, 3), normalised as {norm}", layout="NHWC", pixels=False,
        mean=mean, std=std, input_size=size, output_kind=kind, output_text=out_text, output_stride=stride,
        class_names=tuple(names), metadata=(f"deeplab-edge model info ({source})",) if info is not None else (),
        ops=dict(Counter(type(layer).__name__ for layer in model.layers)),
        provenance={"preset": info.preset, "dataset": info.extra.get("dataset", "")} if info is not None else {},
        verification=None, notes=(*notes, "a Keras model: `deeplab-edge export` verifies each exported file against it"))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
