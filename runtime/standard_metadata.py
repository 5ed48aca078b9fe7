"""The standard TFLite metadata (`metadata_schema.fbs`), read and written without TensorFlow or MediaPipe.

Phone clients (MediaPipe Tasks' ImageSegmenter, the LiteRT support library) read a flatbuffer stored in
the model's metadata entry `TFLITE_METADATA` (file identifier "M001"): per input tensor the image
properties and NormalizationOptions (mean, std on 0..255 pixels), per output tensor the image
properties and an associated label file (TENSOR_AXIS_LABELS), and, for segmenters, a custom metadata
entry `SEGMENTER_METADATA` (image_segmenter_metadata_schema.fbs, identifier "V001") whose `activation`
(NONE, SIGMOID, SOFTMAX) the client applies to the output. Associated files travel in a zip archive
appended to the flatbuffer.

Only the fields a segmenter needs are written; fields are addressed by their slot in the public schema
(slot i of a table is vtable offset 4 + 2 * i; a union takes two slots, type then value). Reading goes
through the bounds-checked reader of `files.py`, so a malformed entry is an error, never a crash.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

from deeplab_edge.errors import UserError

from .files import FlatbufferError, FlatReader

ENTRY_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
SEGMENTER_ENTRY = "SEGMENTER_METADATA"
SEGMENTER_IDENTIFIER = b"V001"
ACTIVATIONS = ("none", "sigmoid", "softmax")  # ImageSegmenterOptions.activation: NONE=0, SIGMOID=1, SOFTMAX=2
MIN_PARSER_VERSION = "1.5.0"  # custom_metadata in SubGraphMetadata was added in schema 1.5.0

# Slots (field indices) of the public schema, in declaration order.
_MODEL = dict(name=0, description=1, version=2, subgraph_metadata=3, author=4, license=5, associated_files=6,
              min_parser_version=7)
_SUBGRAPH = dict(name=0, description=1, input_tensor_metadata=2, output_tensor_metadata=3, associated_files=4,
                 input_process_units=5, output_process_units=6, input_tensor_groups=7, output_tensor_groups=8,
                 custom_metadata=9)
_TENSOR = dict(name=0, description=1, dimension_names=2, content=3, process_units=4, stats=5, associated_files=6)
_CONTENT = dict(content_properties_type=0, content_properties=1, range=2)
_IMAGE_PROPERTIES = dict(color_space=0, default_size=1)
_PROCESS_UNIT = dict(options_type=0, options=1)
_NORMALIZATION = dict(mean=0, std=1)
_STATS = dict(max=0, min=1)
_FILE = dict(name=0, description=1, type=2, locale=3, version=4)
_CUSTOM = dict(name=0, data=1)
_SEGMENTER_OPTIONS = dict(activation=0, min_parser_version=1)
_IMAGE_PROPERTIES_TYPE = 2  # ContentProperties union: FeatureProperties=1, ImageProperties=2
_NORMALIZATION_TYPE = 1  # ProcessUnitOptions union: NormalizationOptions=1
_RGB = 1  # ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


def _slot(index: int) -> int:
    return 4 + 2 * index


@dataclass(frozen=True)
class StandardMetadata:
    """What a segmentation client needs from a file's standard TFLite metadata (None = not stated)."""

    name: str = ""
    description: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    activation: str | None = None  # "none", "sigmoid", "softmax"


# --- reading ---------------------------------------------------------------------------------------

def metadata_entry(buf: bytes, name: str) -> bytes | None:
    """The bytes of the TFLite model's metadata entry `name`, or None. `buf` must be a checked file."""
    r = FlatReader(buf)
    model = r.table(r.indirect(0))
    buffers = r.tables(model, 12)
    for entry in r.tables(model, 16):
        if _string(r, entry, 4) != name:
            continue
        buffer = buffers[r.scalar(entry, 6, "<I")]
        start, length = r.vector(buffer, 4, 1)
        if length:
            return bytes(buf[start:start + length])
        offset, size = r.scalar(buffer, 6, "<Q"), r.scalar(buffer, 8, "<Q")
        if offset > 1 and size and offset + size <= len(buf):  # stored after the flatbuffer (files over 2 GB)
            return bytes(buf[offset:offset + size])
        return b""
    return None


def read_standard_metadata(buf: bytes, *, source: str = "file", output_index: int = 0) -> StandardMetadata | None:
    """The standard metadata of a TFLite file (validated by `check_model_file`), or None when it has none."""
    try:
        data = metadata_entry(buf, ENTRY_NAME)
        if data is None:
            return None
        return _parse(data, buf, output_index)
    except (FlatbufferError, struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"The standard TFLite metadata ({ENTRY_NAME}) in {source} is malformed ({e}). "
                        "Write it again with `deeplab-edge export`, or remove it.") from None


def _parse(data: bytes, model_buf: bytes, output_index: int) -> StandardMetadata:
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ValueError(f"file identifier {bytes(data[4:8])!r}, expected {IDENTIFIER!r}")
    r = FlatReader(data)
    root = r.table(r.indirect(0))
    name, description = _string(r, root, _slot(_MODEL["name"])), _string(r, root, _slot(_MODEL["description"]))
    subgraphs = r.tables(root, _slot(_MODEL["subgraph_metadata"]))
    if not subgraphs:
        return StandardMetadata(name, description)
    sg = subgraphs[0]
    mean = std = None
    inputs = r.tables(sg, _slot(_SUBGRAPH["input_tensor_metadata"]))
    if inputs:
        for unit in r.tables(inputs[0], _slot(_TENSOR["process_units"])):
            if r.scalar(unit, _slot(_PROCESS_UNIT["options_type"]), "<B") == _NORMALIZATION_TYPE:
                opts = _table_field(r, unit, _PROCESS_UNIT["options"])
                mean = _floats(r, opts, _slot(_NORMALIZATION["mean"]))
                std = _floats(r, opts, _slot(_NORMALIZATION["std"]))
    labels = None
    outputs = r.tables(sg, _slot(_SUBGRAPH["output_tensor_metadata"]))
    for tensor in ([outputs[output_index]] if output_index < len(outputs) else []) + outputs:
        for f in r.tables(tensor, _slot(_TENSOR["associated_files"])):
            if r.scalar(f, _slot(_FILE["type"]), "<b") == _TENSOR_AXIS_LABELS and labels is None:
                labels = _associated_labels(model_buf, _string(r, f, _slot(_FILE["name"])))
    activation = None
    for custom in r.tables(sg, _slot(_SUBGRAPH["custom_metadata"])):
        if _string(r, custom, _slot(_CUSTOM["name"])) == SEGMENTER_ENTRY:
            start, length = r.vector(custom, _slot(_CUSTOM["data"]), 1)
            activation = _segmenter_activation(bytes(data[start:start + length]))
    return StandardMetadata(name, description, mean or None, std or None, labels, activation)


def _segmenter_activation(data: bytes) -> str | None:
    if len(data) < 8:
        return None
    r = FlatReader(data)
    options = r.table(r.indirect(0))
    value = r.scalar(options, _slot(_SEGMENTER_OPTIONS["activation"]), "<b")
    return ACTIVATIONS[value] if 0 <= value < len(ACTIVATIONS) else None


def _associated_labels(model_buf: bytes, name: str) -> tuple[str, ...] | None:
    """Lines of the label file `name` in the zip archive appended to the model, or None if absent."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_buf)) as z:
            text = z.read(name).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError):
        return None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _string(r: FlatReader, table: int, slot: int) -> str:
    start, length = r.vector(table, slot, 1)
    return bytes(r.buf[start:start + length]).decode("utf-8") if length else ""


def _floats(r: FlatReader, table: int, slot: int) -> tuple[float, ...]:
    start, length = r.vector(table, slot, 4)
    return struct.unpack_from(f"<{length}f", r.buf, start) if length else ()


def _table_field(r: FlatReader, table: int, index: int) -> int:
    pos = r.field(table, _slot(index))
    if pos is None:
        raise ValueError("a union value is missing")
    return r.table(r.indirect(pos))


# --- writing ---------------------------------------------------------------------------------------

def build_standard_metadata(*, name: str, description: str, mean, std, class_names, activation: str,
                            labels_file: str, input_name: str = "image", output_name: str = "segmentation",
                            version: str = "", author: str = "deeplab-edge") -> bytes:
    """The `TFLITE_METADATA` flatbuffer of an image segmenter with one RGB input and one output."""
    import flatbuffers

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}")
    b = flatbuffers.Builder(1024)

    def table(fields: list[tuple[int, str, object]]) -> int:
        """fields: (index, kind, value) with kind 'offset', 'byte' or 'ubyte'; written in one object."""
        b.StartObject(max(i for i, _, _ in fields) + 1)
        for index, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(index, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(index, value, -1)  # never equal to the default: always written
            else:
                b.PrependUint8Slot(index, value, 255)
        return b.EndObject()

    def offsets(items: list[int]) -> int:
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def floats(values) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(list(values)):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def image_content() -> int:
        props = table([(_IMAGE_PROPERTIES["color_space"], "byte", _RGB)])
        return table([(_CONTENT["content_properties_type"], "ubyte", _IMAGE_PROPERTIES_TYPE),
                      (_CONTENT["content_properties"], "offset", props)])

    # Input: an RGB image, normalised (pixel - mean) / std, with its value range as stats.
    norm = table([(_NORMALIZATION["mean"], "offset", floats(mean)), (_NORMALIZATION["std"], "offset", floats(std))])
    unit = table([(_PROCESS_UNIT["options_type"], "ubyte", _NORMALIZATION_TYPE), (_PROCESS_UNIT["options"], "offset", norm)])
    lo = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    hi = [(255.0 - m) / s for m, s in zip(mean, std, strict=True)]
    stats = table([(_STATS["max"], "offset", floats(hi)), (_STATS["min"], "offset", floats(lo))])
    in_name, in_desc, in_content = b.CreateString(input_name), b.CreateString(
        "RGB image; pixels normalised as (pixel - mean) / std"), image_content()
    units = offsets([unit])
    input_meta = table([(_TENSOR["name"], "offset", in_name), (_TENSOR["description"], "offset", in_desc),
                        (_TENSOR["content"], "offset", in_content), (_TENSOR["process_units"], "offset", units),
                        (_TENSOR["stats"], "offset", stats)])
    # Output: per-pixel class scores, the label file, as MediaPipe's segmenter writer describes them.
    lf_name, lf_desc = b.CreateString(labels_file), b.CreateString("Labels for categories that the model can segment.")
    label_file = table([(_FILE["name"], "offset", lf_name), (_FILE["description"], "offset", lf_desc),
                        (_FILE["type"], "byte", _TENSOR_AXIS_LABELS)])
    out_name = b.CreateString(output_name)
    out_desc = b.CreateString(f"Per-pixel scores of {len(class_names)} classes ({activation} applies)")
    out_content, files = image_content(), offsets([label_file])
    output_meta = table([(_TENSOR["name"], "offset", out_name), (_TENSOR["description"], "offset", out_desc),
                         (_TENSOR["content"], "offset", out_content), (_TENSOR["associated_files"], "offset", files)])
    # The segmenter's custom metadata: a nested flatbuffer with the activation to apply.
    seg = flatbuffers.Builder(64)
    seg_version = seg.CreateString("1.0.0")
    seg.StartObject(2)
    seg.PrependInt8Slot(_SEGMENTER_OPTIONS["activation"], ACTIVATIONS.index(activation), -1)
    seg.PrependUOffsetTRelativeSlot(_SEGMENTER_OPTIONS["min_parser_version"], seg_version, 0)
    seg.Finish(seg.EndObject(), file_identifier=SEGMENTER_IDENTIFIER)
    custom_name = b.CreateString(SEGMENTER_ENTRY)
    custom_data = b.CreateByteVector(bytes(seg.Output()))
    custom = table([(_CUSTOM["name"], "offset", custom_name), (_CUSTOM["data"], "offset", custom_data)])
    sg_inputs, sg_outputs, sg_custom = offsets([input_meta]), offsets([output_meta]), offsets([custom])
    subgraph = table([(_SUBGRAPH["input_tensor_metadata"], "offset", sg_inputs),
                      (_SUBGRAPH["output_tensor_metadata"], "offset", sg_outputs),
                      (_SUBGRAPH["custom_metadata"], "offset", sg_custom)])
    fields = [(_MODEL["name"], "offset", b.CreateString(name)),
              (_MODEL["description"], "offset", b.CreateString(description)),
              (_MODEL["subgraph_metadata"], "offset", offsets([subgraph])),
              (_MODEL["author"], "offset", b.CreateString(author)),
              (_MODEL["min_parser_version"], "offset", b.CreateString(MIN_PARSER_VERSION))]
    if version:
        fields.append((_MODEL["version"], "offset", b.CreateString(version)))
    b.Finish(table(fields), file_identifier=IDENTIFIER)
    return bytes(b.Output())


def attach_labels(model: bytes, labels_file: str, class_names) -> bytes:
    """The model with a zip archive holding `labels_file` (one class name per line) appended, as the
    TFLite metadata populator packs associated files; the flatbuffer itself is unchanged."""
    out = io.BytesIO()
    out.write(model)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr(labels_file, "\n".join(class_names) + "\n")
    return out.getvalue()


def tflite_output_activation(buf: bytes, tensor_index: int) -> str | None:
    """"sigmoid" / "softmax" when the op that produces `tensor_index` (through any trailing quantize,
    dequantize or reshape) is LOGISTIC / SOFTMAX; else None. `buf` must be a checked TFLite file."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    r = FlatReader(buf)
    try:
        model = r.table(r.indirect(0))
        codes = r.tables(model, 6)
        sg = r.tables(model, 8)[0]
        ops = r.tables(sg, 10)
        producer = {}
        for op in ops:
            for out in r.ints(op, 8):
                producer[out] = op
        for _ in range(8):
            op = producer.get(tensor_index)
            if op is None:
                return None
            code = codes[r.scalar(op, 4, "<I")]
            builtin = max(r.scalar(code, 4, "<b"), r.scalar(code, 10, "<i"))  # deprecated byte / int32 code
            name = names.get(builtin, "")
            if name == "LOGISTIC":
                return "sigmoid"
            if name == "SOFTMAX":
                return "softmax"
            if name not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE"):
                return None
            tensor_index = r.ints(op, 6)[0]
    except (FlatbufferError, struct.error, IndexError):
        return None
    return None
