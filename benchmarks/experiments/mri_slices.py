"""Export a real 3-class grayscale brain-MRI segmentation set from files that nilearn ships.

Source: the nilearn wheel (PyPI, BSD-3-Clause) carries, in nilearn/datasets/data/, the
ICBM 2009a nonlinear symmetric MNI152 template (McConnell Brain Imaging Centre, Fonov et al.
2009/2011) as 1 mm NIfTI volumes of 197 x 233 x 189 voxels, uint8 0..255:
    mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz   T1-weighted image
    mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz   grey-matter probability map
    mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz   white-matter probability map
The label of a voxel is the most probable of (other = 255 - gm - wm, gm, wm):
    0 background (air, skull, scalp, CSF, everything that is not GM or WM), 1 grey matter, 2 white matter.

Slices are cut along all three axes. The template is exactly left/right symmetric, so sagittal
slices x and 196 - x are identical: only one hemisphere (x <= 98) is written. Neighbouring
slices are 1 mm apart and nearly identical, so the split holds out one contiguous slab per axis
and drops a guard band of slices on each side of it (written to neither split).

Needs only python3 + numpy + Pillow. No nilearn install needed: point --source at the wheel
(`pip download --no-deps nilearn==0.14.1 -d DIR`), at a folder holding the three .nii.gz files,
or leave it out to use an installed nilearn.

Writes OUT/images/NAME.png (8-bit grayscale), OUT/masks/NAME.png (8-bit, class index per pixel),
OUT/class_names.txt, OUT/train.txt, OUT/val.txt (stems), OUT/SOURCE.txt (provenance).

    pip download --no-deps nilearn==0.14.1 -d /tmp/nilearn
    python benchmarks/experiments/mri_slices.py --out /tmp/mri --source /tmp/nilearn/nilearn-0.14.1-py3-none-any.whl
    deeplab-edge train --data /tmp/mri --input-size 160 160 --epochs 8      # the 2026-12-03 onnx-targets record
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
CLASS_NAMES = ("background", "grey_matter", "white_matter")
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}
AXES = {"sag": 0, "cor": 1, "axi": 2}


def read_nifti(raw: bytes) -> np.ndarray:
    """A NIfTI-1 volume (.nii or gzipped) as a float32 array in voxel (i, j, k) order."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if struct.unpack("<i", raw[:4])[0] == 348:
        e = "<"
    elif struct.unpack(">i", raw[:4])[0] == 348:
        e = ">"
    else:
        raise ValueError("not a NIfTI-1 file")
    dim = struct.unpack(e + "8h", raw[40:56])
    datatype = struct.unpack(e + "h", raw[70:72])[0]
    vox_offset, slope, inter = struct.unpack(e + "3f", raw[108:120])
    shape = tuple(int(d) for d in dim[1:1 + dim[0]])
    a = np.frombuffer(raw, dtype=e + NIFTI_DTYPES[datatype], count=int(np.prod(shape)),
                      offset=int(vox_offset)).reshape(shape, order="F").astype(np.float32)
    if slope not in (0.0, 1.0) or inter != 0.0:
        a = a * (slope or 1.0) + inter
    return a


def load_sources(source: str | None) -> tuple[dict[str, bytes], str]:
    """The three files' bytes and a description of where they came from."""
    if source is None:
        spec = importlib.util.find_spec("nilearn")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("nilearn is not installed: pass --source nilearn-*.whl or a folder with "
                             + ", ".join(FILES.values()))
        source = str(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data")
    p = Path(source)
    if p.is_file() and p.suffix == ".whl":
        with zipfile.ZipFile(p) as z:
            out = {k: z.read(f"nilearn/datasets/data/{name}") for k, name in FILES.items()}
        return out, f"wheel {p.name}"
    if p.is_dir():
        return {k: (p / name).read_bytes() for k, name in FILES.items()}, f"folder {p}"
    raise SystemExit(f"--source {p}: expected a nilearn .whl file or a folder")


def to_png_arrays(img: np.ndarray, lab: np.ndarray, size: int) -> tuple[Image.Image, Image.Image]:
    """Superior/anterior up; pad to a square with background, then resize (image bilinear, mask nearest)."""
    img, lab = np.rot90(img), np.rot90(lab)
    if size:
        h, w = img.shape
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        pi = np.zeros((s, s), np.uint8)
        pl = np.zeros((s, s), np.uint8)
        pi[top:top + h, left:left + w] = img
        pl[top:top + h, left:left + w] = lab
        return (Image.fromarray(pi, "L").resize((size, size), Image.BILINEAR),
                Image.fromarray(pl, "L").resize((size, size), Image.NEAREST))
    return Image.fromarray(np.ascontiguousarray(img), "L"), Image.fromarray(np.ascontiguousarray(lab), "L")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True,
                    help="the dataset folder to write (images/, masks/, class_names.txt, train.txt, val.txt)")
    ap.add_argument("--source", help="nilearn .whl, or folder holding the three .nii.gz files "
                    "(default: the installed nilearn package)")
    ap.add_argument("--size", type=int, default=224, help="square output size; 0 = native slice size, no padding (default 224)")
    ap.add_argument("--min-brain", type=float, default=0.02,
                    help="keep a slice when GM+WM cover at least this share of it (default 0.02)")
    ap.add_argument("--axes", default="sag,cor,axi", help="comma list of sag, cor, axi (default all)")
    ap.add_argument("--val-start", type=float, default=0.30,
                    help="where the validation slab starts, as a fraction of each axis's kept slices (default 0.30)")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="slab length, fraction of kept slices (default 0.15)")
    ap.add_argument("--guard", type=int, default=4, help="slices dropped on each side of the slab (default 4)")
    a = ap.parse_args(argv)

    raw, where = load_sources(a.source)
    vol = {k: read_nifti(b) for k, b in raw.items()}
    t1 = np.clip(vol["t1"], 0, 255).astype(np.uint8)
    gm, wm = vol["gm"], vol["wm"]
    other = np.clip(255.0 - gm - wm, 0, None)
    lab = np.argmax(np.stack([other, gm, wm]), axis=0).astype(np.uint8)  # ties -> lower class
    mid = (t1.shape[0] - 1) // 2

    root = Path(a.out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    train, val, counts = [], [], np.zeros(3, np.int64)
    for axis_name in [s.strip() for s in a.axes.split(",") if s.strip()]:
        ax = AXES[axis_name]
        n = t1.shape[ax]
        idx = range(0, mid + 1) if ax == 0 else range(n)  # symmetric template: one hemisphere
        keep = [i for i in idx if (np.take(lab, i, axis=ax) > 0).mean() >= a.min_brain]
        k = len(keep)
        v0 = int(round(a.val_start * k))
        v1 = v0 + max(1, int(round(a.val_fraction * k)))
        for r, i in enumerate(keep):
            if v0 - a.guard <= r < v0 or v1 <= r < v1 + a.guard:
                continue  # guard band: in neither split, not written
            stem = f"{axis_name}_{'xyz'[ax]}{i:03d}"
            im, mk = to_png_arrays(np.take(t1, i, axis=ax), np.take(lab, i, axis=ax), a.size)
            im.save(root / "images" / f"{stem}.png")
            mk.save(root / "masks" / f"{stem}.png")
            counts += np.bincount(np.asarray(mk).ravel(), minlength=3)[:3]
            (val if v0 <= r < v1 else train).append(stem)

    (root / "class_names.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")
    sha = {FILES[k]: hashlib.sha256(b).hexdigest() for k, b in raw.items()}
    (root / "SOURCE.txt").write_text(
        f"From {where} (nilearn, BSD-3-Clause; template: ICBM 2009a nonlinear symmetric, "
        "McConnell Brain Imaging Centre, Fonov et al., NeuroImage 2011 / 2009).\n"
        "Labels: argmax of (255-gm-wm, gm, wm) = 0 background, 1 grey matter, 2 white matter.\n"
        f"size={a.size} min_brain={a.min_brain} axes={a.axes} val_start={a.val_start} "
        f"val_fraction={a.val_fraction} guard={a.guard}\n"
        + "".join(f"sha256 {h}  {n}\n" for n, h in sha.items()))
    share = counts / counts.sum()
    print(f"{len(train)} train + {len(val)} val images in {root}; class pixel share "
          + ", ".join(f"{n} {s:.1%}" for n, s in zip(CLASS_NAMES, share, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
