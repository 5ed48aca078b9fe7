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


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a runtime needs to use a file with no other file beside it.

    Pixels are normalised as (pixel - mean) / std, pixel in [0, 255], RGB channel order.
    `output` is "logits" (N, H, W, C float) or "labels" (N, H, W int, argmax inside the model).
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    layout: str = "NHWC"
    output: str = "logits"
    preset: str = ""
    variant: str = ""  # export format name, e.g. "tflite_int8"
    version: str = ""
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise UserError(f"input_size must be (height, width) > 0; received {self.input_size}.")
        if self.layout not in ("NHWC", "NCHW"):
            raise UserError(f"layout must be NHWC or NCHW; received {self.layout!r}.")
        if self.output not in ("logits", "labels"):
            raise UserError(f"output must be 'logits' or 'labels'; received {self.output!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"mean and std need 3 values each, std > 0; received mean={self.mean}, std={self.std}.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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


def _tflite_module():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_tflite_metadata(buf: bytes, *, source: str = "file") -> ModelMetadata | None:
    """The metadata of a TFLite flatbuffer, or None when it carries none. `buf` must be validated first."""
    schema = _tflite_module()
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_KEY.encode():
            buffer = model.Buffers(entry.Buffer())
            data = buffer.DataAsNumpy()
            if not isinstance(data, int):
                return ModelMetadata.from_json(data.tobytes(), source=source)
            if buffer.Offset() > 1 and buffer.Size():  # stored after the flatbuffer (files over 2 GB)
                return ModelMetadata.from_json(bytes(buf[buffer.Offset():buffer.Offset() + buffer.Size()]),
                                               source=source)
            raise UserError(f"The deeplab-edge metadata buffer in {source} is empty.")
    return None


def write_tflite_metadata(buf: bytes, meta: ModelMetadata) -> bytes:
    """Return a copy of a TFLite flatbuffer with `meta` stored (replacing any earlier entry)."""
    from ai_edge_litert.tools import flatbuffer_utils

    schema = _tflite_module()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(buf))
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"") not in (METADATA_KEY, METADATA_KEY.encode())]
    buffer = schema.BufferT()
    buffer.data = list(meta.to_json().encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_onnx_metadata(custom_metadata_map: dict, *, source: str = "file") -> ModelMetadata | None:
    """Metadata from onnxruntime's `session.get_modelmeta().custom_metadata_map`."""
    text = custom_metadata_map.get(METADATA_KEY)
    return None if text is None else ModelMetadata.from_json(text, source=source)
