"""Every user mistake gives a UserError naming the file and the fix; no malformed file crashes the process."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

from deeplab_edge.cli import main  # noqa: E402
from deeplab_edge.errors import UserError  # noqa: E402
from deeplab_edge.runtime import check_model_file, iter_images, load_image, load_predictor  # noqa: E402
from deeplab_edge.runtime.files import check_tflite_bytes  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> rm.RuntimeModels:
    return rm.get_models(tmp_path_factory.mktemp("runtime_models"))


def jpeg_bytes(size=(32, 24)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


# --- model files ----------------------------------------------------------------------------------


def test_missing_directory_and_empty_model_files(tmp_path):
    with pytest.raises(UserError, match=r"nope.tflite does not exist"):
        check_model_file(tmp_path / "nope.tflite")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(UserError, match=r"dir.onnx is a directory"):
        load_predictor(tmp_path / "dir.onnx")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.tflite is empty \(0 bytes\)"):
        load_predictor(tmp_path / "empty.tflite")


@pytest.mark.parametrize("kind", ["tflite", "tflite_int8", "onnx"])
def test_truncated_files_are_refused_at_every_cut(models, tmp_path, kind):
    src = getattr(models, kind)
    data = src.read_bytes()
    suffix = src.suffix
    for cut in (1, 7, 8, 64, 1000, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        path = tmp_path / f"cut{cut}{suffix}"
        path.write_bytes(data[:cut])
        with pytest.raises(UserError, match=rf"cut{cut}{suffix}.*(not a valid|is a text file|unrecognised)"):
            load_predictor(path)
    assert check_model_file(src) == suffix[1:]


def test_non_model_files_are_named(tmp_path):
    cases = {
        "photo.tflite": (jpeg_bytes(), r"photo.tflite is a JPEG image, not a TFLite flatbuffer"),
        "notes.onnx": (b"just some notes\n" * 10, r"notes.onnx is a text file, not an ONNX model"),
        "weights.tflite": (b"\x89HDF\r\n\x1a\n" + bytes(100), r"HDF5 file \(a Keras .h5 checkpoint\?\)"),
        "noise.tflite": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
                         r"noise.tflite is not a valid TFLite flatbuffer: the TFLite file identifier 'TFL3'"),
        "model.bin": (b"\x00\x01\x02\x03" * 10, r"Cannot tell the kind of model file .*model.bin"),
    }
    for name, (data, pattern) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=pattern):
            load_predictor(tmp_path / name)


def test_wrong_suffix_or_backend_says_what_the_file_is(models, tmp_path):
    onnx_as_tflite = rm.copy_to(models.onnx, tmp_path / "x.tflite")
    with pytest.raises(UserError, match=r"x.tflite is an ONNX model \(protobuf\), not a TFLite flatbuffer; "
                                        r"rename it to .onnx or pass `backend` onnx"):
        load_predictor(onnx_as_tflite)
    assert load_predictor(onnx_as_tflite, backend="onnx").backend.name == "onnxruntime"
    tflite_as_onnx = rm.copy_to(models.tflite, tmp_path / "y.onnx")
    with pytest.raises(UserError, match=r"y.onnx is a TFLite flatbuffer, not an ONNX model; rename it to .tflite"):
        load_predictor(tflite_as_onnx)
    with pytest.raises(UserError, match=r"is a TFLite flatbuffer, not an ONNX model.*`backend` tflite"):
        load_predictor(models.tflite, backend="onnx")
    with pytest.raises(UserError, match=r"Unknown backend 'tfilte'. Did you mean: tflite"):
        load_predictor(models.tflite, backend="tfilte")
    # No telling suffix: the content decides.
    assert load_predictor(rm.copy_to(models.tflite, tmp_path / "model.bin")).backend.name == "litert"


def test_buffer_declared_past_the_end_is_refused(models, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(models.tflite.read_bytes()))
    model.buffers[1].offset, model.buffers[1].size = 10**9, 1000
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert "past the end of the file" in check_tflite_bytes(data)
    (tmp_path / "offset.tflite").write_bytes(data)
    with pytest.raises(UserError, match="offset.tflite is not a valid TFLite flatbuffer: buffer 1 declares"):
        load_predictor(tmp_path / "offset.tflite")


def test_malformed_metadata_is_a_user_error(models, tmp_path):
    import onnx

    proto = onnx.load(str(models.onnx))
    proto.metadata_props[0].value = json.dumps({"format": "something-else/9"})
    onnx.save(proto, str(tmp_path / "meta.onnx"))
    with pytest.raises(UserError, match=r"metadata in .*meta.onnx is malformed \(unknown format tag"):
        load_predictor(tmp_path / "meta.onnx")


CORRUPT_SCRIPT = r"""
import json, sys, numpy as np
from pathlib import Path
from deeplab_edge.errors import UserError
from deeplab_edge.runtime import load_predictor
src, out, TRIALS = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
data = bytearray(src.read_bytes())
rng = np.random.default_rng(0)
results = {"user_error": 0, "ran": 0}
for trial in range(TRIALS):
    bad = bytearray(data)
    # Header, tables and weights alike: 1-8 random bytes anywhere past the magic, some runs truncated.
    for pos in rng.integers(8, len(bad), int(rng.integers(1, 9))):
        bad[pos] = int(rng.integers(0, 256))
    if trial % 10 == 9:
        bad = bad[: int(rng.integers(8, len(bad)))]
    path = out / f"corrupt{trial}{src.suffix}"
    path.write_bytes(bytes(bad))
    try:
        p = load_predictor(path)
        p.predict([np.zeros((16, 16, 3), np.uint8)])
        results["ran"] += 1
    except UserError:
        results["user_error"] += 1
    except Exception as e:  # anything but a UserError is a bug: counted, and the test fails
        key = f"{type(e).__name__}: {str(e)[:120]}"
        results[key] = results.get(key, 0) + 1
print(json.dumps(results))
"""


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_corrupted_bytes_never_crash_the_process(models, tmp_path, kind):
    trials = {"tflite": 100, "onnx": 200}[kind]  # LiteRT's trials cost 0.3 s each
    proc = subprocess.run([sys.executable, "-c", CORRUPT_SCRIPT, str(getattr(models, kind)), str(tmp_path),
                           str(trials)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]  # a segfault or abort would show here
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    others = {k: v for k, v in results.items() if k not in ("user_error", "ran")}
    assert not others, others  # every failure is a clear UserError
    assert results["user_error"] + results["ran"] == trials and results["user_error"] >= trials // 10, results


# --- images ---------------------------------------------------------------------------------------


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_unreadable_and_non_image_files(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(UserError, match=r"text.jpg is not an image Pillow can read"):
        load_image(tmp_path / "text.jpg")
    data = jpeg_bytes((200, 200))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"Cannot read image .*cut.jpg.*truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(UserError, match=r"missing.png does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(UserError, match=r"is a directory"):
        load_image(tmp_path)


def test_image_modes_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    out = load_image(save(Image.fromarray(grey), tmp_path / "grey.png"))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)

    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colour underneath is kept (alpha dropped)
    out = load_image(save(Image.fromarray(rgba), tmp_path / "rgba.png"))
    assert np.array_equal(out, rgba[..., :3])

    deep = (rng.integers(0, 65536, (20, 30))).astype(np.uint16)
    im16 = Image.fromarray(deep)
    assert im16.mode.startswith("I;16")
    out = load_image(save(im16, tmp_path / "deep.png"))
    assert np.array_equal(out[..., 1], np.round(deep / 257).astype(np.uint8))

    pal = Image.fromarray(rng.integers(0, 4, (20, 30), dtype=np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.info["transparency"] = 0
    out = load_image(save(pal, tmp_path / "pal.png", transparency=0))
    assert out.shape == (20, 30, 3) and set(map(tuple, out.reshape(-1, 3))) <= {(0, 0, 0), (255, 0, 0),
                                                                               (0, 255, 0), (0, 0, 255)}
    out = load_image(save(Image.fromarray(grey).convert("1"), tmp_path / "bw.png"))
    assert out.shape == (20, 30, 3)


def test_exif_orientation_is_applied(models, tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:10].mean() > 200 and out[30:].mean() < 50  # the left band is now at the top
    summary = rm_predict(models, [path], tmp_path / "out")
    mask = np.asarray(Image.open(summary.written[0].mask))
    assert mask.shape == (40, 20)


def rm_predict(models, inputs, out):
    from deeplab_edge.runtime import predict_paths

    return predict_paths(models.onnx, inputs, out)


def test_very_small_and_too_large_images(tmp_path):
    with pytest.raises(UserError, match=r"tiny.png is 5x20 pixels; images need at least 8 pixels"):
        load_image(save(Image.new("RGB", (5, 20)), tmp_path / "tiny.png"))
    with pytest.raises(UserError, match=r"bomb.png is 12000x9000 pixels \(108 MP\), over the limit of 100 MP"):
        load_image(png_header_only(tmp_path / "bomb.png", 12000, 9000))
    with pytest.raises(UserError, match=r"huge.png is .*over the limit of 100 MP"):
        load_image(png_header_only(tmp_path / "huge.png", 40000, 40000))
    with pytest.raises(UserError, match=r"over the limit of 1 MP"):
        load_image(save(Image.new("RGB", (1200, 1000)), tmp_path / "mid.png"), max_pixels=1_000_000)


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG that declares w x h pixels but holds almost no data: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_large_but_acceptable_image(models, tmp_path):
    big = np.zeros((2000, 3000, 3), np.uint8)
    big[:, :1500] = (200, 50, 50)
    path = save(Image.fromarray(big), tmp_path / "big.jpg", quality=80)
    img = load_image(path)
    assert img.shape == (2000, 3000, 3)
    mask = load_predictor(models.tflite).predict([img])[0]
    assert mask.shape == (2000, 3000)


def test_bad_arrays_given_to_the_predictor(models):
    p = load_predictor(models.onnx)
    with pytest.raises(UserError, match=r"image 0 must be uint8 RGB \(0..255\); received dtype float32"):
        p.predict([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(UserError, match=r"must have shape \(H, W, 3\); received \(10, 10, 5\)"):
        p.predict([np.zeros((10, 10, 5), np.uint8)])
    with pytest.raises(UserError, match=r"Expected normalised float images of shape \(N, 64, 64, 3\)"):
        rm.run_normalised(p, np.zeros((1, 32, 32, 3), np.float32))


def test_inputs_and_output_folder(models, tmp_path):
    with pytest.raises(UserError, match=r"Input .*nothing.jpg does not exist"):
        iter_images([tmp_path / "nothing.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"Folder .*empty has no image files"):
        iter_images([tmp_path / "empty"])
    photo = save(Image.new("RGB", (20, 20)), tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    assert main(["predict", str(models.onnx), str(photo), "--out", str(tmp_path / "file")]) == 2


def test_one_bad_image_does_not_stop_the_others(models, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, photo in list(rm.photos().items())[:2]:
        save(Image.fromarray(photo), folder / f"{name}.jpg")
    (folder / "broken.jpg").write_bytes(jpeg_bytes()[:40])
    (folder / "readme.txt").write_text("skipped: not an image suffix")
    out = tmp_path / "out"
    rc = main(["predict", str(models.tflite), str(folder), "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 image(s) failed" in err and "broken.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_mask.png", "astronaut_overlay.png",
                                                      "chelsea_mask.png", "chelsea_overlay.png"]
