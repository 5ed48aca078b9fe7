"""Folder datasets in both layouts, and the clear errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deeplab_edge.errors import UserError
from deeplab_edge.model.data import load_arrays, scan_folder
from deeplab_edge.model.demo_data import SYNTHETIC_CLASSES, save_mask, synthetic_arrays, write_folder


@pytest.fixture()
def arrays():
    return synthetic_arrays(12, 64, seed=3)


@pytest.mark.parametrize("layout", ["voc", "plain"])
def test_both_layouts_load(tmp_path, arrays, layout):
    x, y = arrays
    root = write_folder(x, y, tmp_path / layout, layout=layout, val_count=3)
    ds = scan_folder(root)
    assert ds.layout == layout and ds.class_names == SYNTHETIC_CLASSES
    assert len(ds.train) == 9 and len(ds.val) == 3
    images, masks = load_arrays(ds.val, (64, 64), ds.num_classes)
    np.testing.assert_array_equal(masks, y[:3])  # palette PNG indices round-trip exactly
    assert images.shape == (3, 64, 64, 3)


def test_hash_split_without_split_files(tmp_path, arrays):
    x, y = arrays
    ds = scan_folder(write_folder(x, y, tmp_path / "d", layout="plain"), val_fraction=0.3)
    assert len(ds.train) + len(ds.val) == 12 and ds.val and ds.train
    assert scan_folder(tmp_path / "d", val_fraction=0.3).val == ds.val  # deterministic


def test_missing_mask_names_the_file(tmp_path, arrays):
    root = write_folder(*arrays, tmp_path / "d", layout="plain")
    (root / "masks" / "img_0004.png").unlink()
    with pytest.raises(UserError, match=r"Mask for image .*img_0004\.png not found"):
        scan_folder(root)


def test_size_mismatch_names_the_file(tmp_path, arrays):
    root = write_folder(*arrays, tmp_path / "d", layout="plain")
    save_mask(np.zeros((32, 40), np.uint8), root / "masks" / "img_0002.png")
    ds = scan_folder(root, val_fraction=0.0)
    with pytest.raises(UserError, match=r"img_0002\.png is 40x32.*same size"):
        load_arrays(ds.val + ds.train, (64, 64), ds.num_classes)


def test_label_out_of_range_names_file_and_labels(tmp_path, arrays):
    x, y = arrays
    y = y.copy()
    y[5, :4, :4] = 7
    y[5, 4:8, :4] = 255  # ignore is fine
    root = write_folder(x, y, tmp_path / "d", layout="voc")
    ds = scan_folder(root, val_fraction=0.0)
    with pytest.raises(UserError, match=r"img_0005\.png has label\(s\) \[7\] but there are 4 classes"):
        load_arrays(ds.val + ds.train, (64, 64), ds.num_classes)


def test_unreadable_image_names_the_file(tmp_path, arrays):
    root = write_folder(*arrays, tmp_path / "d", layout="voc")
    (root / "JPEGImages" / "img_0001.png").write_bytes(b"not an image at all")
    ds = scan_folder(root, val_fraction=0.0)
    with pytest.raises(UserError, match=r"img_0001\.png is not an image"):
        load_arrays(ds.val + ds.train, (64, 64), ds.num_classes)


def test_rgb_mask_refused(tmp_path, arrays):
    root = write_folder(*arrays, tmp_path / "d", layout="plain")
    Image.new("RGB", (64, 64)).save(root / "masks" / "img_0000.png")
    ds = scan_folder(root, val_fraction=0.0)
    with pytest.raises(UserError, match=r"img_0000\.png has mode RGB"):
        load_arrays(ds.val + ds.train, (64, 64), ds.num_classes)


def test_wrong_layout_and_missing_class_names(tmp_path, arrays):
    with pytest.raises(UserError, match="neither JPEGImages"):
        scan_folder(tmp_path)
    root = write_folder(*arrays, tmp_path / "d", layout="plain")
    (root / "class_names.txt").unlink()
    with pytest.raises(UserError, match="class_names.txt"):
        scan_folder(root)


def test_demo_dataset_is_deterministic(tmp_path):
    from deeplab_edge.model.demo_data import demo_dataset

    a = demo_dataset(n_train=6, n_val=2, size=64, root=tmp_path / "a", progress=False)
    b = demo_dataset(n_train=6, n_val=2, size=64, root=tmp_path / "b", progress=False)
    for sub in ("JPEGImages/train_00003.jpg", "SegmentationClass/val_00001.png"):
        assert (a / sub).read_bytes() == (b / sub).read_bytes()
    ds = scan_folder(a)
    assert len(ds.train) == 6 and ds.class_names[0] == "background" and "person" in ds.class_names
    _, masks = load_arrays(ds.val + ds.train, (64, 64), ds.num_classes)
    assert len(np.unique(masks)) > 2  # real instances were pasted


def test_data_check_lists_every_problem_with_its_file(tmp_path, capsys):
    from PIL import Image

    from deeplab_edge.cli import main

    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "class_names.txt").write_text("background\nthing\n")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        Image.fromarray((rng.random((40, 50)) > 0.7).astype(np.uint8), mode="L").save(root / "masks" / f"p{i}.png")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "8 image/mask pairs checked, 0 problem(s)" in out and "thing" in out
    Image.fromarray(np.zeros((30, 50), np.uint8), mode="L").save(root / "masks" / "p1.png")  # wrong size
    Image.fromarray(np.full((40, 50), 7, np.uint8), mode="L").save(root / "masks" / "p2.png")  # label 7 of 2
    (root / "images" / "p3.png").write_bytes(b"not an image")  # unreadable
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(root / "masks" / "p4.png")  # RGB, not indices
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s)" in out
    for name in ("p1.png", "p2.png", "p3.png", "p4.png"):
        assert name in out
    assert "label(s) [7]" in out and "same size" in out and "mode RGB" in out
    assert main(["data", "check"]) == 2 and "needs the dataset folder" in capsys.readouterr().err


def _iterate(ds):
    return [(i.numpy(), m.numpy()) for i, m in ds]


def test_file_pairs_stream_each_file_at_its_own_size_shard_and_cache(tmp_path, arrays):
    from deeplab_edge.model.data import load_pair
    from deeplab_edge.model.data_check import check_dataset
    from deeplab_edge.model.input_pipeline import cache_key, file_pairs

    x, y = arrays
    root = write_folder(x, y, tmp_path / "d", layout="plain")
    Image.fromarray(np.zeros((50, 90, 3), np.uint8)).save(root / "images" / "img_0003.png")  # another size
    save_mask(np.ones((50, 90), np.uint8), root / "masks" / "img_0003.png")
    samples = scan_folder(root, val_fraction=0.0).train
    plain = _iterate(file_pairs(samples, 4))
    for s, (img, mask) in zip(samples, plain, strict=True):
        ref_img, ref_mask = load_pair(s, 4)
        np.testing.assert_array_equal(img, ref_img)
        np.testing.assert_array_equal(mask, ref_mask)
    assert {p[0].shape for p in plain} == {(64, 64, 3), (50, 90, 3)}
    # tf.io's decoders (for images the quick scan marks) give Pillow's pixels, for PNG and for JPEG.
    Image.fromarray(x[7]).save(root / "images" / "img_0007.jpg", quality=90)
    (root / "images" / "img_0007.png").unlink()
    Image.fromarray(x[8]).convert("L").save(root / "images" / "img_0008.png")
    samples = scan_folder(root, val_fraction=0.0).train
    report = check_dataset(scan_folder(root), quick=True, samples=samples)
    assert report.native == (True,) * len(samples)
    plain = _iterate(file_pairs(samples, 4))
    for a, b in zip(plain, _iterate(file_pairs(samples, 4, native=report.native)), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    key = lambda pairs: sorted(p[0].tobytes() for p in pairs)  # noqa: E731
    shards = [_iterate(file_pairs(samples, 4, shard=(2, k))) for k in (0, 1)]
    assert len(shards[0]) == (len(samples) + 1) // 2 and key(shards[0] + shards[1]) == key(plain)
    ds = file_pairs(samples, 4, seed=5)
    first, second = _iterate(ds), _iterate(ds)
    assert key(first) == key(plain) and [p[0].tobytes() for p in first] != [p[0].tobytes() for p in second]
    assert key(_iterate(file_pairs(samples, 4, cache="memory", seed=1))) == key(plain)
    cached = file_pairs(samples, 4, cache=str(tmp_path / "cache"))
    assert key(_iterate(cached)) == key(plain) and key(_iterate(cached)) == key(plain)
    before = cache_key(samples)
    assert list((tmp_path / "cache").glob(f"pairs-{before}-0of1*"))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "images" / "img_0005.png")
    assert cache_key(samples) != before  # a changed file gets a new cache file


def test_training_batches_come_from_the_original_resolution(tmp_path):
    from deeplab_edge.model.input_pipeline import array_pairs, make_tf_dataset

    # A 200x120 image of vertical stripes, mask = stripe or not. Scale 0.5 of the 128x128 model size: one
    # resample of the original to 64x64 in the corner of the crop; the rest is padding (ignore label, mean).
    img = np.zeros((120, 200, 3), np.uint8)
    img[:, ::4] = img[:, 1::4] = 200
    mask = (img[..., 0] > 0).astype(np.uint8)
    pairs = array_pairs(img[None].repeat(4, 0), mask[None].repeat(4, 0))
    mean, std = (10.0, 10.0, 10.0), (2.0, 2.0, 2.0)
    ds = make_tf_dataset(pairs, (128, 128), batch_size=4, training=True, mean=mean, std=std, scale_range=(0.5, 0.5))
    x, y = next(iter(ds))
    x, y = x.numpy(), y.numpy()
    assert x.shape == (4, 128, 128, 3) and y.shape == (4, 128, 128)
    for xi, yi in zip(x, y, strict=True):
        inside = yi != 255
        assert inside.sum() == 64 * 64 and (inside[:64, :64].all() or inside[:64, 64:].all())  # maybe flipped
        np.testing.assert_allclose(xi[~inside], 0.0, atol=1e-5)  # padding = the mean colour -> 0
        assert set(np.unique(yi[inside])) == {0, 1}
    whole = make_tf_dataset(pairs, (60, 100), batch_size=4, training=False, mean=mean, std=std)
    x, y = next(iter(whole))
    np.testing.assert_array_equal(y.numpy()[0], mask[::2, ::2])  # nearest from the original mask


def test_training_names_a_bad_file_before_and_during_training(tmp_path, arrays):
    import re

    import tensorflow as tf

    from deeplab_edge.model.data_check import check_dataset
    from deeplab_edge.model.input_pipeline import data_error, file_pairs, input_error
    from deeplab_edge.model.presets import get_preset
    from deeplab_edge.model.train import TrainSettings, train

    x, y = arrays
    y = y.copy()
    y[4, :3, :3] = 9
    root = write_folder(x, y, tmp_path / "d", layout="voc", val_count=2)
    ds = scan_folder(root)
    cfg = get_preset("tiny").config.replace(num_classes=4)
    settings = TrainSettings(epochs=1, batch_size=4, verbose=0)
    with pytest.raises(UserError, match=r"(?s)1 problem\(s\).*img_0004\.png has label\(s\) \[9\]"):
        train(cfg, ds, tmp_path / "run", settings, preset="tiny")
    assert not (tmp_path / "run" / "best.keras").exists()
    # A JPEG cut short keeps a readable header: the quick scan passes it, decoding names it.
    buf = tmp_path / "full.jpg"
    Image.fromarray(x[6]).save(buf, quality=95)
    (root / "JPEGImages" / "img_0006.jpg").write_bytes(buf.read_bytes()[:1500])
    (root / "JPEGImages" / "img_0006.png").unlink()
    ds = scan_folder(root)
    with pytest.raises(tf.errors.OpError) as e:  # Pillow's decoder names the file itself
        _iterate(file_pairs(ds.train[4:], 4))
    err = data_error(e.value)
    assert err is not None and "img_0006.jpg" in str(err) and "truncated" in str(err)
    y[4, :3, :3] = 0
    save_mask(y[4], root / "SegmentationClass" / "img_0004.png")
    # In training tf.io decodes this JPEG (the quick scan passes its header and marks it for tf.io); its
    # failure names no file, so training's handler traces it back with a full check.
    samples = ds.train + ds.val
    native = check_dataset(ds, quick=True, samples=samples).native
    assert native[ds.train.index(next(t for t in ds.train if t.image.name == "img_0006.jpg"))]
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        _iterate(file_pairs(ds.train, 4, native=native[:len(ds.train)]))
    assert data_error(e.value) is None
    err = input_error(e.value, ds, samples)
    assert isinstance(err, UserError)
    assert re.search(r"(?s)1 problem\(s\).*img_0006\.jpg.*Is it truncated", str(err))  # load_image's words
