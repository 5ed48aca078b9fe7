"""Check a model file before any interpreter sees it: right kind, complete, structurally sound.

Interpreters report a truncated or mislabelled file with messages a user cannot act on (and a
malformed flatbuffer may take the process down), so every file goes through `check_model_file`:
- TFLite: the flatbuffer identifier `TFL3` at bytes 4..8, then a bounds-checked walk of the tables
  that matter (buffers, subgraphs, tensors, operators, metadata) with a reader that never reads
  outside the file.
- ONNX: a walk of the top-level protobuf fields of the ModelProto (every length inside the file, a
  graph present), before onnxruntime parses it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NoReturn

from deeplab_edge.errors import ModelFileError, unknown_name_error

KINDS = {"tflite": ".tflite", "onnx": ".onnx"}
BACKEND_ALIASES = {"tflite": "tflite", "litert": "tflite", "onnx": "onnx", "onnxruntime": "onnx", "ort": "onnx"}

# Leading bytes of files people pass by mistake -> what they are.
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 checkpoint?)"),
    (b"PK\x03\x04", "a ZIP archive (a .keras checkpoint or a zipped model?)"),
    (b"\x1f\x8b", "a gzip archive"),
)


def canonical_backend(backend: str | None) -> str | None:
    """'tflite'/'litert' -> 'tflite', 'onnx'/'onnxruntime' -> 'onnx'; None stays None."""
    if backend is None:
        return None
    key = str(backend).strip().lower()
    if key not in BACKEND_ALIASES:
        raise unknown_name_error("backend", str(backend), ["tflite", "onnx"])
    return BACKEND_ALIASES[key]


def check_model_file(path: str | Path, backend: str | None = None) -> str:
    """Return "tflite" or "onnx" for a sound model file, or raise UserError saying what is wrong.

    The kind expected comes from `backend` when given, else from the file suffix; the file's
    content must agree with it.
    """
    path = Path(path)
    want = canonical_backend(backend)
    if not path.exists():
        raise ModelFileError(f"Model file {path} does not exist; pass the path of a .tflite or .onnx file.")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; pass the path of a .tflite or .onnx file inside it.")
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"Cannot read model file {path}: {e.strerror or e}.") from None
    if not buf:
        raise ModelFileError(f"Model file {path} is empty (0 bytes); export it again or copy it again.")
    if want is None:
        want = {".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix.lower())
    found = sniff_kind(buf)
    if want is None:
        if found in KINDS:
            return _check(buf, found, path)
        raise ModelFileError(f"Cannot tell the kind of model file {path} (suffix {path.suffix!r}, content: "
                        f"{_describe(buf, found)}); use a .tflite or .onnx file, or pass `backend` tflite|onnx.")
    if found == want or found is None:
        # found is None for a file too damaged to recognise: the structural check names the problem.
        return _check(buf, want, path)
    if found in KINDS:
        _wrong_kind(path, want, found)
    raise ModelFileError(f"{path} is {_describe(buf, found)}, not {_a(want)} {_kind_name(want)}; pass a model exported "
                    "with `deeplab-edge export`.")


def sniff_kind(buf: bytes) -> str | None:
    """'tflite', 'onnx', a description of a known non-model file, or None when unrecognised."""
    if len(buf) >= 8 and buf[4:8] == b"TFL3":
        return "tflite"
    for magic, what in _MAGIC:
        if buf.startswith(magic):
            return what
    if _looks_like_onnx(buf):
        return "onnx"
    if _looks_like_text(buf):
        return "a text file"
    return None


def _describe(buf: bytes, found: str | None) -> str:
    return found if found and found not in KINDS else f"unrecognised data ({len(buf)} bytes)"


def _kind_name(kind: str) -> str:
    return {"tflite": "TFLite flatbuffer", "onnx": "ONNX model"}[kind]


def _a(kind: str) -> str:
    return "an" if kind == "onnx" else "a"


def _wrong_kind(path: Path, want: str, found: str) -> NoReturn:
    what = {"tflite": "a TFLite flatbuffer", "onnx": "an ONNX model (protobuf)"}[found]
    raise ModelFileError(f"{path} is {what}, not {_a(want)} {_kind_name(want)}; rename it to "
                    f"{KINDS[found]} or pass `backend` {found}.")


def _looks_like_text(buf: bytes) -> bool:
    head = buf[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text)


def _check(buf: bytes, kind: str, path: Path) -> str:
    problem = check_tflite_bytes(buf) if kind == "tflite" else check_onnx_bytes(buf)
    if problem:
        raise ModelFileError(f"{path} is not a valid {_kind_name(kind)}: {problem}. The file is probably truncated "
                        "or corrupt; export it again or copy it again.")
    return kind


# --- TFLite ---------------------------------------------------------------------------------------


class FlatbufferError(Exception):
    pass


class FlatReader:
    """Reads flatbuffer tables and vectors, refusing any position outside the buffer."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.n = len(buf)

    def _get(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise FlatbufferError(f"a field at byte {pos} lies outside the file ({self.n} bytes)")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def indirect(self, pos: int) -> int:
        return pos + self._get("<I", pos)

    def table(self, pos: int) -> int:
        vtable = pos - self._get("<i", pos)
        vt_size, obj_size = self._get("<H", vtable), self._get("<H", vtable + 2)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > self.n or pos + obj_size > self.n:
            raise FlatbufferError(f"a table at byte {pos} has a broken vtable or runs past the end of the file")
        return pos

    def field(self, table: int, slot: int) -> int | None:
        """Absolute position of field `slot` (4, 6, ...) of `table`, or None when absent."""
        vtable = table - self._get("<i", table)
        if slot >= self._get("<H", vtable):
            return None
        off = self._get("<H", vtable + slot)
        return table + off if off else None

    def scalar(self, table: int, slot: int, fmt: str, default=0):
        pos = self.field(table, slot)
        return default if pos is None else self._get(fmt, pos)

    def vector(self, table: int, slot: int, elem_size: int) -> tuple[int, int]:
        """(start, length) of a vector field, checked to lie inside the file; (0, 0) when absent."""
        pos = self.field(table, slot)
        if pos is None:
            return 0, 0
        vec = self.indirect(pos)
        length = self._get("<I", vec)
        start = vec + 4
        if start + length * elem_size > self.n:
            raise FlatbufferError(f"a vector of {length} items at byte {vec} runs past the end of the file")
        return start, length

    def tables(self, table: int, slot: int) -> list[int]:
        start, length = self.vector(table, slot, 4)
        return [self.table(self.indirect(start + 4 * i)) for i in range(length)]

    def ints(self, table: int, slot: int) -> list[int]:
        start, length = self.vector(table, slot, 4)
        return [self._get("<i", start + 4 * i) for i in range(length)]


def check_tflite_bytes(buf: bytes) -> str | None:
    """None for a structurally sound TFLite flatbuffer, else a short description of the first problem."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        return "the TFLite file identifier 'TFL3' is missing at bytes 4..8"
    r = FlatReader(buf)
    try:
        model = r.table(r.indirect(0))
        buffers = r.tables(model, 12)
        for i, b in enumerate(buffers):
            r.vector(b, 4, 1)  # inline data inside the file
            offset, size = r.scalar(b, 6, "<Q"), r.scalar(b, 8, "<Q")
            if offset > 1 and offset + size > len(buf):
                return f"buffer {i} declares {size} bytes at offset {offset}, past the end of the file ({len(buf)} bytes)"
        codes = r.tables(model, 6)
        for code in codes:
            r.vector(code, 6, 1)  # custom_code string
        n_codes = len(codes)
        subgraphs = r.tables(model, 8)
        if not subgraphs:
            return "it has no subgraph"
        for s, sg in enumerate(subgraphs):
            tensors = r.tables(sg, 4)
            for t, tensor in enumerate(tensors):
                r.vector(tensor, 4, 4)  # shape
                r.vector(tensor, 10, 1)  # name
                if r.scalar(tensor, 8, "<I") >= max(len(buffers), 1):
                    return f"tensor {t} of subgraph {s} refers to a buffer that does not exist"
            names = ("inputs", "outputs")
            for slot, what in ((6, names[0]), (8, names[1])):
                if any(not 0 <= i < len(tensors) for i in r.ints(sg, slot)):
                    return f"subgraph {s} lists {what} that are not among its {len(tensors)} tensors"
            for o, op in enumerate(r.tables(sg, 10)):
                if r.scalar(op, 4, "<I") >= n_codes:
                    return f"operator {o} of subgraph {s} has an unknown opcode index"
                if any(not -1 <= i < len(tensors) for i in r.ints(op, 6) + r.ints(op, 8)):
                    return f"operator {o} of subgraph {s} refers to a tensor that does not exist"
        for m in r.tables(model, 16):
            r.vector(m, 4, 1)  # name
            if r.scalar(m, 6, "<I") >= len(buffers):
                return "a metadata entry refers to a buffer that does not exist"
    except FlatbufferError as e:
        return str(e)
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as e:
        return f"unreadable flatbuffer ({type(e).__name__}: {e})"
    return None


# --- ONNX -----------------------------------------------------------------------------------------

_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}  # ModelProto: field -> wire type


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise FlatbufferError("a varint runs past the end of the file")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise FlatbufferError("a varint is longer than 10 bytes")


def _onnx_fields(buf: bytes) -> set[int]:
    """Walk the top-level protobuf fields of a ModelProto; raise FlatbufferError on anything malformed."""
    pos, seen = 0, set()
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or wire not in (0, 1, 2, 5):
            raise FlatbufferError(f"byte {pos} does not start a protobuf field")
        if number in _ONNX_FIELDS and _ONNX_FIELDS[number] != wire:
            raise FlatbufferError(f"ModelProto field {number} has the wrong wire type")
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            length, pos = _varint(buf, pos)
            pos += length
        if pos > len(buf):
            raise FlatbufferError(f"field {number} runs past the end of the file ({len(buf)} bytes)")
        seen.add(number)
    return seen


def _looks_like_onnx(buf: bytes) -> bool:
    try:
        fields = _onnx_fields(buf)  # fast: length-delimited fields are skipped, not parsed
    except FlatbufferError:
        return False
    return 1 in fields and bool(fields & {7, 8})


def check_onnx_bytes(buf: bytes) -> str | None:
    """None for a file whose top-level protobuf structure is a complete ModelProto, else the problem."""
    if len(buf) >= 8 and buf[4:8] == b"TFL3":
        return "it is a TFLite flatbuffer"
    try:
        fields = _onnx_fields(buf)
    except FlatbufferError as e:
        return str(e)
    if 1 not in fields:
        return "the ModelProto has no ir_version"
    if 7 not in fields:
        return "the ModelProto has no graph"
    return None


def _proto_fields(buf: bytes, pos: int = 0, end: int | None = None):
    """(field number, wire type, value) of one protobuf message: an int for varints, (start, end) for
    length-delimited fields, None for fixed-size ones."""
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            yield number, wire, None
        else:
            raise FlatbufferError(f"byte {pos} does not start a protobuf field")


def onnx_op_counts(buf: bytes) -> dict[str, int]:
    """op_type -> count of the nodes of an ONNX ModelProto's main graph (a custom domain prefixes its name)."""
    counts: dict[str, int] = {}
    for number, wire, value in _proto_fields(buf):
        if number != 7 or wire != 2:  # ModelProto.graph
            continue
        for gnum, gwire, node in _proto_fields(buf, *value):
            if gnum != 1 or gwire != 2:  # GraphProto.node
                continue
            op = domain = ""
            for nnum, nwire, v in _proto_fields(buf, *node):
                if nwire == 2 and nnum in (4, 7):  # NodeProto.op_type, .domain
                    text = buf[v[0]:v[1]].decode(errors="replace")
                    op, domain = (text, domain) if nnum == 4 else (op, text)
            name = op if domain in ("", "ai.onnx") else f"{domain}.{op}"
            counts[name] = counts.get(name, 0) + 1
    return counts
