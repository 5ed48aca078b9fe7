"""End-to-end bench over exported files (JSON + Markdown + plots), the budget gate, and profile."""

from __future__ import annotations

import json

from deeplab_edge.cli import main


def test_bench_two_files_writes_json_markdown_and_plots(exported, synthetic_folder, tmp_path, capsys):
    report = exported[0]
    files = {f.format: str(f.path) for f in report.files}
    out = tmp_path / "bench"
    rc = main(["bench", files["tflite_fp32"], files["tflite_int8"], "--data", str(synthetic_folder),
               "--eval-images", "8", "--min-runs", "5", "--min-time", "0.05", "--warmup", "1", "--out", str(out),
               "--device", "cpu"])
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names == ["tflite_fp32", "tflite_int8"]
    for r in data["rows"]:
        assert r["status"] == "ok" and r["latency"]["p50_ms"] > 0 and r["latency"]["runs"] >= 5
        assert 0 <= r["miou"] <= 1 and r["pre_ms"] is not None and r["peak_rss_mb"] > 0
        assert r["provider"] == "XNNPACK (CPU)"  # what ran, read back from the runtime
    assert data["rows"][0]["agreement"] == 1.0 and data["rows"][1]["agreement"] > 0.9
    assert data["machine"]["cpu_model"] and "isa" in data["machine"]
    md = (out / "bench.md").read_text()
    assert "tflite_int8" in md and "p50" in md
    # Per-class IoU in every scored row, and a per-class table named by the dataset's classes.
    for r in data["rows"]:
        assert len(r["per_class_iou"]) == 4 and all(v is None or 0 <= v <= 1 for v in r["per_class_iou"])
    assert data["settings"]["class_names"] and "Per-class IoU" in md and data["settings"]["class_names"][1] in md
    assert (out / "latency_vs_miou.png").stat().st_size > 1000 and (out / "latency.png").stat().st_size > 1000


def test_bench_manifest_with_keras_baseline_and_broken_budget(exported, synthetic_folder, tmp_path, capsys):
    report = exported[0]
    budget = tmp_path / "budget.json"
    budget.write_text(json.dumps({"max_p50_ms": {"tflite_int8": 0.000001}, "min_miou": {"*": 0.0}}))
    out = tmp_path / "b"
    rc = main(["bench", str(report.manifest), "--data", str(synthetic_folder), "--eval-images", "4",
               "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(out), "--budget", str(budget)])
    captured = capsys.readouterr().out
    assert rc == 1
    assert "tflite_int8" in captured and "max_p50_ms" in captured
    rows = {r["name"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    assert rows["keras_fp32"]["status"] == "ok" and rows["keras_fp32"]["agreement"] == 1.0
    assert {"tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "onnx_fp32", "onnx_int8"} <= set(rows)
    assert rows["onnx_fp32"]["agreement"] > 0.99
    assert rows["keras_fp32"]["provider"] == "TensorFlow CPU" and rows["onnx_fp32"]["provider"] == "CPUExecutionProvider"
    assert all(r["provider"] == "" for r in rows.values() if r["status"] != "ok")
    # GPU rows are listed as skipped with a reason when no GPU is present, never dropped.
    gpu = [r for r in rows.values() if r["device"] == "gpu"]
    assert gpu and all(r["status"] in ("skipped", "ok") and (r["status"] == "ok" or r["reason"]) for r in gpu)


def test_bench_bad_budget_refused_before_work(tmp_path, capsys):
    budget = tmp_path / "b.json"
    budget.write_text(json.dumps({"max_p50": {"*": 3}}))
    assert main(["bench", "nothing.tflite", "--budget", str(budget)]) == 2
    assert "max_p50_ms" in capsys.readouterr().err


def test_profile_tflite_and_onnx(exported, capsys, tmp_path):
    files = {f.format: str(f.path) for f in exported[0].files}
    assert main(["profile", files["tflite_int8"], "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out and "DEPTHWISE_CONV_2D" in out and "%" in out
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["whole_model_ms"] > 0 and sum(r["macs"] for r in prof["by_type"]) > 0
    assert main(["profile", files["onnx_int8"]]) == 0
    assert "onnxruntime" in capsys.readouterr().out
