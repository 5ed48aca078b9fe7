"""Benchmark rows and reports: JSON round trip, Markdown / terminal tables, PNG plots (no TensorFlow)."""

from __future__ import annotations

import json

import pytest

from deeplab_edge.benchmarks.report import to_markdown, to_terminal, write_markdown
from deeplab_edge.benchmarks.results import BenchReport, BenchRow, add_miou_drop, load_report
from deeplab_edge.errors import UserError
from deeplab_edge.runtime.stages import latency_stats

MACHINE = {
    "cpu_model": "AMD EPYC 7B13",
    "isa": {"avx2": True, "fma": True, "avx512f": False, "avx512_vnni": False},
    "isa_summary": "AVX2+FMA",
    "cpu_count": 2,
    "cpu_affinity": 2,
    "os": "Linux",
    "python": "3.11.9",
    "versions": {"numpy": "2.4.6", "onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0", "tensorflow": None},
    "ort_providers": ["CPUExecutionProvider"],
    "gpus": [],
    "date": "2026-11-24T06:00:00+00:00",
}
SETTINGS = {"warmup": 5, "min_runs": 20, "min_time_s": 2.0, "threads": 2, "eval_images": 50,
            "input_size": [128, 128]}


def lat(p50_ms: float, spread: float = 0.1, n: int = 40):
    return latency_stats([int((p50_ms + spread * (i - n / 2) / n) * 1e6) for i in range(n)])


def make_report() -> BenchReport:
    rows = [
        BenchRow(name="keras_fp32", format="keras", backend="keras", threads=2, latency=lat(40.0),
                 miou=0.62, pixel_acc=0.9, agreement=1.0, peak_rss_mb=900.0),
        BenchRow(name="tflite_fp32", format="tflite", backend="litert", threads=2, file="m_fp32.tflite",
                 size_mb=3.3, latency=lat(7.3), pre_ms=0.4, post_ms=0.3, miou=0.62, pixel_acc=0.9,
                 agreement=0.999, peak_rss_mb=950.0),
        BenchRow(name="tflite_int8", format="tflite", backend="litert", threads=2, file="m_int8.tflite",
                 size_mb=1.0, latency=lat(5.1), pre_ms=0.4, post_ms=0.3, miou=0.611, pixel_acc=0.89,
                 agreement=0.97, peak_rss_mb=960.0),
        BenchRow(name="onnx_fp32", format="onnx", backend="onnxruntime", threads=2, file="m.onnx",
                 size_mb=3.4, latency=lat(6.0), miou=0.62, agreement=0.999, peak_rss_mb=980.0),
        BenchRow.skipped("tflite_gpu", "tflite", "litert", "no GPU delegate on this machine | CPU only",
                         device="gpu"),
        BenchRow.failed("onnx_int8", "onnx", "onnxruntime", "quantize_static raised ValueError: bad graph"),
    ]
    return BenchReport(rows=tuple(add_miou_drop(rows, "keras_fp32")), machine=MACHINE, settings=SETTINGS,
                       created="2026-11-24T06:00:00+00:00")


def test_add_miou_drop_in_points():
    r = make_report()
    assert r.row("keras_fp32").miou_drop == 0.0
    assert r.row("tflite_int8").miou_drop == pytest.approx(0.9)
    assert r.row("tflite_gpu").miou_drop is None
    with pytest.raises(UserError, match="tflite_gpu"):
        add_miou_drop(r.rows, "tflite_gpu")  # skipped: no mIoU
    with pytest.raises(UserError, match="Did you mean: keras_fp32"):
        add_miou_drop(r.rows, "keras_fp23")


def test_row_validation_messages():
    with pytest.raises(UserError, match="Unknown status 'skip'.*Did you mean: skipped"):
        BenchRow(name="a", format="onnx", backend="onnxruntime", status="skip", reason="x")
    with pytest.raises(UserError, match="Unknown backend 'tflite'"):
        BenchRow(name="a", format="tflite", backend="tflite")
    with pytest.raises(UserError, match="gives no reason"):
        BenchRow(name="a", format="onnx", backend="onnxruntime", status="skipped")
    with pytest.raises(TypeError):
        BenchRow("a", "onnx", "onnxruntime")  # keyword-only: never filled by position
    row = make_report().rows[0]
    with pytest.raises(UserError, match="unique"):
        BenchReport(rows=(row, row))
    with pytest.raises(UserError, match="Did you mean: tflite_int8"):
        make_report().row("tflite_in8")


def test_json_round_trip_with_stable_keys(tmp_path):
    report = make_report()
    path = report.write_json(tmp_path / "out" / "bench.json")
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary file left
    d = json.loads(path.read_text())
    assert list(d) == ["format", "created", "machine", "settings", "rows"]
    assert d["format"] == "deeplab-edge-bench/1"
    assert list(d["rows"][1]) == [
        "name", "format", "backend", "device", "threads", "status", "reason", "file", "size_mb", "latency",
        "pre_ms", "post_ms", "peak_rss_mb", "miou", "pixel_acc", "agreement", "miou_drop", "note", "provider",
        "base_rss_mb", "load_ms", "first_ms", "per_class_iou", "gpu",
    ]
    assert list(d["rows"][1]["latency"]) == [
        "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "fps", "outliers",
    ]
    assert d["rows"][4]["latency"] is None and d["rows"][4]["status"] == "skipped"
    back = load_report(path)
    assert back == report
    assert BenchReport.from_dict(report.to_dict()) == report


def test_load_report_errors_name_the_file(tmp_path):
    bad = tmp_path / "bench.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bench.json is not readable JSON"):
        load_report(bad)
    bad.write_text(json.dumps({"format": "other/9", "rows": []}))
    with pytest.raises(UserError, match="Unsupported benchmark report format 'other/9'"):
        load_report(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_report(tmp_path / "missing.json")


def test_markdown_lists_every_row_and_reason(tmp_path):
    report = make_report()
    md = to_markdown(report)
    for name in report.names:
        assert f"| {name} |" in md
    assert "AMD EPYC 7B13" in md and "AVX2+FMA" in md and "2 threads" in md
    assert "onnxruntime 1.32.0" in md and "ai-edge-litert 2.3.0" in md and "2026-11-24" in md
    assert "tflite_gpu (skipped): no GPU delegate on this machine \\| CPU only" in md
    assert "onnx_int8 (failed): quantize_static raised ValueError: bad graph" in md
    header = next(line for line in md.splitlines() if line.startswith("| name"))
    for col in ("p50 ms", "p90 ms", "p99 ms", "FPS", "pre+post ms", "mIoU %", "ΔmIoU pts", "agreement %",
                "peak RSS MB", "size MB", "status", "threads", "device", "backend", "format"):
        assert col in header
    int8 = next(line for line in md.splitlines() if line.startswith("| tflite_int8 |"))
    assert "| 5.10 |" in int8 and "| 0.70 |" in int8 and "| 61.10 |" in int8 and "| -0.90 |" in int8
    # Every table line has the same number of cells (the escaped | in the reason stays inside its cell).
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.replace("\\|", "").count("|") for line in table}) == 1
    assert to_markdown(report) == md
    path = write_markdown(report, tmp_path / "bench.md")
    assert path.read_text() == md


def test_terminal_table_is_aligned():
    report = make_report()
    text = to_terminal(report)
    lines = text.splitlines()
    assert "AMD EPYC 7B13" in lines[0]
    table = lines[1:3 + len(report.rows)]
    assert all(table[i + 2].startswith(name) for i, name in enumerate(report.names))
    # Right-aligned numeric column: p50 values end at the same column as their header.
    end = table[0].index("p50 ms") + len("p50 ms")
    assert table[3][:end].endswith("7.30") and table[4][:end].endswith("5.10")
    assert "tflite_gpu (skipped): no GPU delegate" in text


def test_empty_report_renders():
    empty = BenchReport(rows=(), machine={}, settings={})
    assert "No rows" in to_markdown(empty) and "(no rows)" in to_terminal(empty)


def test_outliers_are_noted():
    spiky = latency_stats([10_000_000] * 30 + [300_000_000])
    report = BenchReport(rows=(BenchRow(name="onnx_fp32", format="onnx", backend="onnxruntime", latency=spiky),))
    assert "onnx_fp32: 1 of 31 runs" in to_markdown(report)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install 'deeplab-edge[runtime]')")
    from deeplab_edge.benchmarks.plots import plot_latency_bars, plot_latency_vs_miou

    report = make_report()
    a = plot_latency_vs_miou(report, tmp_path / "scatter.png")
    b = plot_latency_bars(report, tmp_path / "bars.png")
    assert _is_png(a) and _is_png(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "scatter.png"]
    # Nothing measurable: still a readable figure, not a crash.
    only_skipped = BenchReport(rows=(report.row("tflite_gpu"),), machine=MACHINE)
    assert _is_png(plot_latency_vs_miou(only_skipped, tmp_path / "e1.png"))
    assert _is_png(plot_latency_bars(only_skipped, tmp_path / "e2.png"))


def test_markdown_header_says_what_the_int8_kernels_can_use():
    from deeplab_edge.benchmarks.report import _header_line

    report = BenchReport(rows=(), machine={"cpu_model": "Cortex-A76", "int8_isa": "int8 kernels: Arm dot product "
                                           "(sdot, asimddp)"}, settings={"threads": 4})
    assert "int8 kernels: Arm dot product" in _header_line(report)
