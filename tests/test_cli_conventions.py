"""The CLI's conventions (issue 26): global flags anywhere, one name per concept with the old names kept,
every option documented with its default, the exit-code table, `inspect`, and one Predictor shared by threads."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from deeplab_edge.cli import COMMANDS, EXIT_CODES, build_parser, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def all_parsers():
    import importlib

    parser, subs = build_parser()
    for name, p in subs.items():
        importlib.import_module(f"deeplab_edge.commands.{name.replace('-', '_')}").add_arguments(p)
    return parser, subs


def test_every_option_has_help_and_shows_its_default():
    _, subs = all_parsers()
    missing = []
    for name, p in subs.items():
        formatter = p._get_formatter()
        for a in p._actions:
            if a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
                continue  # hidden old names
            text = formatter._get_help_string(a) if a.option_strings else (a.help or "")
            if not text:
                missing.append(f"{name} {a.dest}: no help")
            elif a.option_strings and a.nargs != 0 and "default" not in text.lower() and "required" not in text:
                missing.append(f"{name} {a.option_strings[-1]}: no default shown")
        assert p.epilog and "examples:" in p.epilog, name
    assert not missing, "\n".join(missing)


def test_one_name_per_concept_across_commands():
    """The same concept has the same option name everywhere; -o/--out is always a folder."""
    _, subs = all_parsers()
    visible = {name: {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
               for name, p in subs.items()}
    for old in ("--verify-images", "--calibration-count", "--max-train-images", "--format", "--gpu", "--images",
                "--size", "--bench-min-time", "--output"):
        assert not any(old in opts for opts in visible.values()), old
    for name in ("demo", "train", "export", "predict", "bench", "quant-report"):
        assert {"-o", "--out"} <= visible[name], name
    assert {"--device"} <= visible["predict"] and {"--device"} <= visible["bench"]


def test_old_names_still_work_and_say_the_new_one(capsys):
    _, subs = all_parsers()
    args = subs["export"].parse_args(["m.keras", "--verify-images", "7", "--calibration-count", "9"])
    assert (args.verify_images, args.calibration_count) == (7, 9)
    args = subs["bench"].parse_args(["--gpu", "off"])
    assert args.device == "cpu"
    args = subs["quant-report"].parse_args(["m.keras", "--format", "tflite_int8", "--images", "3"])
    assert (args.formats, args.images) == (["tflite_int8"], 3)
    err = capsys.readouterr().err
    assert "--verify-images is now --eval-images" in err and "--gpu is now --device" in err


def test_global_flags_before_or_after_the_subcommand(capsys):
    assert main(["-q", "presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"edge", "tiny"}
    assert main(["presets", "--verbose", "--json"]) == 0
    assert main(["--verbose", "presets", "-q", "--json"]) == 0


def test_mistyped_command_gets_the_nearest_name(capsys):
    assert main(["expot", "m.keras"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean: export?" in err and "Traceback" not in err


def test_input_scale_minus_one_one_parses_in_export_and_quant_report(capsys, tmp_path):
    """`--input-scale -1-1`, as documented, reaches the command (here: a missing file, not a parse error)."""
    for cmd in ("export", "quant-report"):
        assert main([cmd, str(tmp_path / "missing.keras"), "--input-scale", "-1-1"]) == 2
        err = capsys.readouterr().err
        assert "expected one argument" not in err and "does not exist" in err, err
    from deeplab_edge.export.spec import INPUT_SCALE_ALIASES, INPUT_SCALES

    assert INPUT_SCALES[INPUT_SCALE_ALIASES["-1-1"]] == INPUT_SCALES["signed"]


def test_exit_code_table_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+", out, re.M), code
        assert re.search(rf"^\| {code} \|", readme, re.M), f"README exit-code table lacks {code}"
    for name, c in COMMANDS.items():
        if c.extra:
            assert re.search(rf"^\s+{re.escape(name)}\s+pip install 'deeplab-edge\[{c.extra}\]'", out, re.M), name


def test_failed_bench_row_exits_1_unless_allowed(tmp_path, capsys, synthetic_folder):
    """--device gpu turns a missing GPU path into a failed row: exit 1, and 0 with --allow-fail."""
    import onnxruntime as ort
    from test_cli import rm_file

    from deeplab_edge.runtime.backends import GPU_PROVIDERS

    if any(p in GPU_PROVIDERS for p in ort.get_available_providers()):
        pytest.skip("onnxruntime has a GPU provider here, so the GPU row does not fail")
    src = rm_file(tmp_path)
    model = shutil.copy(src, tmp_path / "hand_fp32.onnx")
    base = ["bench", str(model), "--device", "gpu", "--min-runs", "2", "--min-time", "0.01", "--warmup", "1",
            "--data", str(synthetic_folder), "--eval-images", "2", "-o", str(tmp_path / "b")]
    assert main(base) == 1
    out = capsys.readouterr().out
    assert re.search(r"1 row\(s\) failed: \w+_gpu", out), out
    assert main([*base, "--allow-fail"]) == 0


def test_predict_names_every_folder_entry_it_skips(tmp_path, capsys):
    from PIL import Image
    from test_cli import rm_file

    model = rm_file(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder / "ok.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "sub").mkdir()
    rc = main(["predict", str(model), str(folder), "-o", str(tmp_path / "out")])
    cap = capsys.readouterr()
    assert rc == 1  # the broken link looked like an image: a failure
    assert "gone.jpg: a broken symbolic link" in cap.err
    assert "notes.txt: not an image by its suffix" in cap.out and "sub: a folder" in cap.out
    assert (tmp_path / "out" / "ok_mask.png").exists()


def test_inspect_float_and_int8_pixel_files(exported, capsys):
    report = exported[0]
    by = {f.format: f.path for f in report.files}
    assert main(["inspect", str(by["tflite_fp32"])]) == 0
    text = capsys.readouterr().out
    assert "feed it: RGB uint8 pixels 0..255 as they are" in text
    assert "verification: PASS against the Keras model" in text and "CONV_2D" in text
    assert main(["inspect", str(by["tflite_int8"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pixels"] is True and d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["scale"] is not None
    assert d["output_kind"] == "logits" and d["output_stride"] == 1 and len(d["class_names"]) == 4
    assert d["verification"]["same_file"] is True and any("deeplab-edge" in m for m in d["metadata"])
    assert main(["inspect", str(by["onnx_int8"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "onnx" and d["ops"].get("QuantizeLinear", 0) > 0


def test_inspect_a_foreign_file(tmp_path, capsys):
    """A one-channel sigmoid .tflite with no metadata (built here, exported by nobody's toolkit)."""
    from test_foreign_files import B1, W1, conv1x1, tflite_of

    path = tflite_of(conv1x1(W1, B1, "sigmoid"), tmp_path, "person.tflite")
    assert main(["inspect", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["output_kind"] == "foreground probability" and d["metadata"] == []
    assert d["verification"] is None and d["ops"].get("LOGISTIC") == 1
    assert main(["inspect", str(path)]) == 0
    assert "normalisation is not stated" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["tflite_int8", "onnx_fp32"])
def test_one_predictor_shared_by_four_threads(exported, fmt):
    """A thread pool sharing one Predictor: every mask equals the single-threaded one."""
    from deeplab_edge.runtime import load_predictor

    path = next(f.path for f in exported[0].files if f.format == fmt)
    pred = load_predictor(path, num_threads=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(4)]
    want = [pred.predict(img)[0] for img in images]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(40):
                got = pred.predict(images[i])[0]
                assert np.array_equal(got, want[i])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_readme_python_api_example_runs(exported, tmp_path, monkeypatch, capsys):
    """The README's Python API block, run as written, on the tiny model's int8 file."""
    import runtime_models as rm
    from PIL import Image

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- api-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    int8 = next(f.path for f in exported[0].files if f.format == "tflite_int8")
    (tmp_path / "exported").mkdir()
    shutil.copy(int8, tmp_path / "exported" / "edge_int8.tflite")
    Image.fromarray(rm.photos()["astronaut"]).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Model file missing.tflite does not exist" in out or "missing.tflite" in out


def test_stable_api_names():
    import deeplab_edge.errors as errors
    import deeplab_edge.runtime as runtime

    for name in ("load_predictor", "Predictor", "load_image", "inspect_file", "predict_paths"):
        assert name in runtime.__all__ and hasattr(runtime, name)
    for cls in (errors.ModelFileError, errors.ImageError, errors.MissingPackage):
        assert issubclass(cls, errors.UserError)
    import deeplab_edge.benchmarks as benchmarks
    import deeplab_edge.export as export

    for name in ("export_checkpoint", "ExportReport", "Thresholds", "FORMATS"):
        assert name in export.__all__ and getattr(export, name) is not None
    for name in ("bench_files", "write_outputs", "BenchSettings", "check_budget"):
        assert name in benchmarks.__all__ and hasattr(benchmarks, name)


def test_python_bench_entry_point(exported, synthetic_folder, tmp_path):
    """`bench_files` + `write_outputs` (what `deeplab-edge bench` calls), on the file `export_checkpoint`
    wrote (the `exported` fixture), and an export option that no chosen format takes refused before work."""
    from deeplab_edge.benchmarks import BenchSettings, bench_files, write_outputs
    from deeplab_edge.errors import UserError
    from deeplab_edge.export import export_checkpoint

    report = exported[0]
    assert report.passed and "Keras mIoU on the same 16 images" in report.summary()
    int8 = next(str(f.path) for f in report.files if f.format == "tflite_int8")
    settings = BenchSettings(threads=1, warmup=1, min_runs=3, min_time_s=0.02, device="cpu")
    bench = bench_files([int8], data=synthetic_folder, eval_images=4, settings=settings, progress=lambda m: None)
    (row,) = bench.rows
    assert row.name == "tflite_int8" and row.status == "ok" and row.latency.runs >= 3 and 0 <= row.miou <= 1
    written = write_outputs(bench, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]["name"] == "tflite_int8"
    assert tmp_path / "b" / "bench.md" in written
    with pytest.raises(UserError, match="io_type"):
        export_checkpoint("nothing.keras", tmp_path / "x", formats=["onnx_fp32"], io_type="uint8")
    with pytest.raises(UserError, match="Unknown export option 'io_typ'"):
        export_checkpoint("nothing.keras", tmp_path / "x", io_typ="uint8")
    assert not (tmp_path / "x").exists()
