"""Are two export folders the same export? For a refactor's "no change of behaviour" check.

`python benchmarks/experiments/export_identity.py BEFORE AFTER [--images 16] --out DIR`

Byte identity is too strict across runs of the same code: a TFLite file embeds its labels in a zip whose
entry carries the write time, and tf2onnx numbers its node names in an order that varies between runs.
So each file is compared canonically: TFLite bytes with the zip timestamps zeroed; ONNX initializer
values, op types, inputs/outputs and metadata; and every file's raw outputs on the same validation
images of the built-in demo set, bit for bit. Each folder may hold `pred/FORMAT/*_mask.png` (masks
written by `predict`), compared byte for byte. Writes OUT/export-identity.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np


def tflite_canon(data: bytes) -> str:
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 10), (b"PK\x01\x02", 12)):  # local / central zip headers: DOS time+date
        for m in re.finditer(re.escape(sig), data):
            b[m.start() + off:m.start() + off + 4] = b"\0\0\0\0"
    return hashlib.sha256(bytes(b)).hexdigest()


def onnx_canon(path: Path) -> str:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = sorted(hashlib.sha256(numpy_helper.to_array(t).tobytes()).hexdigest() for t in m.graph.initializer)
    ops = sorted(n.op_type for n in m.graph.node)
    io = [(i.name, str(i.type)) for i in [*m.graph.input, *m.graph.output]]
    props = sorted((p.key, p.value) for p in m.metadata_props)
    return hashlib.sha256(json.dumps([inits, ops, io, props]).encode()).hexdigest()


def outputs_hash(path: Path, pixels: np.ndarray) -> str:
    from deeplab_edge.runtime import load_predictor

    p = load_predictor(path, num_threads=1)
    h = hashlib.sha256()
    for i in range(len(pixels)):
        h.update(np.ascontiguousarray(p.run(p.prepare(pixels[i:i + 1])[0])).tobytes())
    return h.hexdigest()


def fingerprint(folder: Path, pixels: np.ndarray) -> dict[str, str]:
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = str(f.relative_to(folder))
        if f.suffix == ".tflite":
            out[rel] = tflite_canon(f.read_bytes())
        elif f.suffix == ".onnx":
            out[rel] = onnx_canon(f)
        elif f.name.endswith("_mask.png"):
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
            continue
        else:
            continue
        out[rel + ":outputs"] = outputs_hash(f, pixels)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--images", type=int, default=16, help="validation images of the demo set to run")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from deeplab_edge.model.data import load_arrays, open_dataset

    ds = open_dataset(None)
    pixels, _ = load_arrays(ds.val[:a.images], (a.size, a.size), ds.num_classes)
    before, after = fingerprint(Path(a.before), pixels), fingerprint(Path(a.after), pixels)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    result = {"before": a.before, "after": a.after, "entries": len(before), "differ": differ,
              "identical": not differ and bool(before)}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "export-identity.json").write_text(json.dumps({**result, "fingerprints": before}, indent=1))
    print(json.dumps(result))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
