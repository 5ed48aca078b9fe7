"""What an exported file says about itself: classes, input size/layout, normalisation, provenance.

Stored as one JSON document under the key `deeplab_edge`:
- TFLite: an entry of the flatbuffer's `metadata` table (name `deeplab_edge`, its buffer holds
  the UTF-8 JSON). Read and written with ai-edge-litert's schema, without TensorFlow.
- ONNX: `metadata_props["deeplab_edge"]` (read back with onnxruntime's `custom_metadata_map`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from deeplab_edge.errors import UserError

METADATA_KEY = "deeplab_edge"
FORMAT_TAG = "deeplab-edge/1"
OUTPUT_KINDS = ("logits", "probabilities", "labels")


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a runtime needs to use a file with no other file beside it.

    Pixels are normalised as (pixel - mean) / std, pixel in [0, 255], RGB channel order.
    `output` is "logits" or "probabilities" (N, H, W, C scores; argmax over C) or "labels" (N, H, W int,
    argmax inside the model). A one-channel score output is a foreground score: class 1 where the
    probability (sigmoid of a logit) is at least `threshold`, with class names (background, foreground).
    `output_layout` is the score output's layout (NHWC or NCHW; "" = the input's `layout`).
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    layout: str = "NHWC"
    output: str = "logits"
    threshold: float = 0.5
    output_layout: str = ""
    preset: str = ""
    variant: str = ""  # export format name, e.g. "tflite_int8"
    version: str = ""
    config: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)  # int8 files: the target and settings they were made for

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise UserError(f"input_size must be (height, width) > 0; received {self.input_size}.")
        if self.layout not in ("NHWC", "NCHW"):
            raise UserError(f"layout must be NHWC or NCHW; received {self.layout!r}.")
        if self.output not in OUTPUT_KINDS:
            raise UserError(f"output must be one of {', '.join(OUTPUT_KINDS)}; received {self.output!r}.")
        if self.output_layout not in ("", "NHWC", "NCHW"):
            raise UserError(f"output_layout must be NHWC or NCHW; received {self.output_layout!r}.")
        if not 0.0 < float(self.threshold) < 1.0:
            raise UserError(f"threshold must lie strictly between 0 and 1; received {self.threshold!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"mean and std need 3 values each, std > 0; received mean={self.mean}, std={self.std}.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scores_layout(self) -> str:
        return self.output_layout or self.layout

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(format=FORMAT_TAG, class_names=list(self.class_names), input_size=list(self.input_size),
                 mean=list(self.mean), std=list(self.std))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "file") -> ModelMetadata:
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError(f"expected a JSON object, got {type(d).__name__}")
            if d.get("format") != FORMAT_TAG:
                raise ValueError(f"unknown format tag {d.get('format')!r}")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in d.items() if k in names})
        except (ValueError, TypeError) as e:
            raise UserError(f"The deeplab-edge metadata in {source} is malformed ({e}).") from None


def read_tflite_metadata(buf: bytes, *, source: str = "file") -> ModelMetadata | None:
    """The metadata of a TFLite flatbuffer, or None when it carries none. `buf` must be validated first."""
    from .standard_metadata import metadata_entry

    data = metadata_entry(buf, METADATA_KEY)
    if data is None:
        return None
    if not data:
        raise UserError(f"The deeplab-edge metadata buffer in {source} is empty.")
    return ModelMetadata.from_json(data, source=source)


def write_tflite_metadata(buf: bytes, meta: ModelMetadata) -> bytes:
    """Return a copy of a TFLite flatbuffer with `meta` stored (replacing any earlier entry)."""
    return write_tflite_entries(buf, {METADATA_KEY: meta.to_json().encode()})


def write_tflite_entries(buf: bytes, entries: dict[str, bytes]) -> bytes:
    """Return a copy of a TFLite flatbuffer with each named metadata entry stored (replacing earlier ones).
    Anything appended after the flatbuffer (a zip of associated files) is dropped."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(buf))
    names = {n for name in entries for n in (name, name.encode())}
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"") not in names]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = list(data)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_onnx_metadata(custom_metadata_map: dict, *, source: str = "file") -> ModelMetadata | None:
    """Metadata from onnxruntime's `session.get_modelmeta().custom_metadata_map`."""
    text = custom_metadata_map.get(METADATA_KEY)
    return None if text is None else ModelMetadata.from_json(text, source=source)
