"""The paired latency gate: statistics on synthetic rounds with known ratios, ABBA timing with a fake
clock, JUnit XML read back by a parser, and a CLI run on the tiny model's files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from deeplab_edge.benchmarks.gate import (
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_REGRESSION,
    GateReport,
    PairResult,
    Verdict,
    estimate,
    judge,
    parse_slowdown,
    time_paired,
)
from deeplab_edge.benchmarks.gate_report import to_junit, to_markdown
from deeplab_edge.errors import UserError


def _rounds(ratio: float, n: int, noise: float, seed: int = 0, drift: float = 0.0):
    """Per-round baseline/candidate times: a shared drift (neighbours) plus independent noise."""
    rng = np.random.default_rng(seed)
    common = 2.0 * (1 + drift * np.sin(np.arange(n) / 6))  # a slow drift that slows both alike
    base = common * np.exp(rng.normal(0, noise, n))
    cand = ratio * common * np.exp(rng.normal(0, noise, n))
    return list(cand), list(base)


def test_known_ratios_give_pass_regression_and_inconclusive():
    assert parse_slowdown("5%") == pytest.approx(0.05) and parse_slowdown("0.1") == pytest.approx(0.1)
    with pytest.raises(UserError, match="percentage"):
        parse_slowdown("five")
    # 10% slower, 1% noise, a 30% drift both share: a regression whatever the drift.
    est = estimate(*_rounds(1.10, 30, 0.01, drift=0.3))
    assert 1.08 < est.ratio < 1.12 and judge(est, 0.05).status == "regression"
    # The same file against itself: a pass.
    est = estimate(*_rounds(1.0, 30, 0.01, seed=1))
    assert judge(est, 0.05).status == "pass" and est.low < 1 < est.high
    # 5% slower against a 5% limit: the interval straddles it.
    v = judge(estimate(*_rounds(1.05, 20, 0.01, seed=2)), 0.05)
    assert v.status == "inconclusive" and "straddles" in v.reason
    # A baseline that varies +-20% between rounds: no verdict, and it says why.
    v = judge(estimate(*_rounds(1.0, 30, 0.2, seed=3)), 0.05)
    assert v.status == "inconclusive" and "too noisy" in v.reason
    with pytest.raises(UserError, match="paired"):
        estimate([1.0], [1.0])


def test_abba_rounds_stop_once_decided():
    now = [0]
    calls = []

    def clock():
        return now[0]

    def fn(name, ms):
        def run():
            calls.append(name)
            now[0] += int(ms * 1e6)
        return run

    cand, base = time_paired(fn("c", 1.2), fn("b", 1.0), max_slowdown=0.05, runs_per_round=3, min_rounds=10,
                             warmup=0, clock=clock)
    assert len(cand) == len(base) == 10  # decided at the first check
    assert np.allclose(cand, 1.2) and np.allclose(base, 1.0)
    blocks = [calls[i] for i in range(0, len(calls), 3)]
    assert blocks[:4] == ["c", "b", "b", "c"]  # ABBA


def _report(status_latency: str, status_miou: str | None) -> GateReport:
    est = estimate(*_rounds(1.0, 10, 0.01))
    pair = PairResult("tflite_int8", "c.tflite", "b.tflite", est, Verdict(status_latency, "latency reason"), 1.0, 1.0,
                      2.0, (0.5, 0.51), 0.99, Verdict(status_miou, "miou reason") if status_miou else None)
    return GateReport((pair,), 0.05, 0.5)


def test_junit_and_markdown_say_each_verdict():
    root = ET.fromstring(to_junit(_report("regression", "pass")))
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["tflite_int8 latency", "tflite_int8 miou"]
    assert root.get("tests") == "2" and root.get("failures") == "1" and cases[0].find("failure") is not None
    root = ET.fromstring(to_junit(_report("inconclusive", None)))
    assert root.get("skipped") == "1" and root.find("testcase/skipped").get("message") == "latency reason"
    assert _report("pass", "regression").exit_code == EXIT_REGRESSION
    assert _report("inconclusive", "pass").exit_code == EXIT_INCONCLUSIVE
    assert _report("pass", "pass").exit_code == EXIT_PASS
    assert "REGRESSION" in to_markdown(_report("pass", "regression"))


def test_gate_cli_on_the_tiny_model_files(exported, synthetic_folder, tmp_path, capsys):
    from deeplab_edge.cli import main

    files = {f.format: str(f.path) for f in exported[0].files}
    out, junit = tmp_path / "gate", tmp_path / "gate.xml"
    rc = main(["bench", files["tflite_int8"], "--baseline", files["tflite_int8"], "--max-slowdown", "10%",
               "--max-time", "5", "--data", str(synthetic_folder), "--eval-images", "4", "--max-miou-drop", "0.5",
               "-o", str(out), "--junit", str(junit), "--threads", "1"])
    doc = json.loads((out / "gate.json").read_text())
    (pair,) = doc["pairs"]
    # The same file against itself: never a regression; pass unless this machine was too noisy to say.
    assert rc in (EXIT_PASS, EXIT_INCONCLUSIVE) and doc["status"] != "regression", doc
    assert pair["agreement"] == 1.0 and pair["miou_verdict"]["status"] == "pass"
    assert ET.parse(junit).getroot().get("tests") == "2"
    assert "Latency gate" in (out / "gate.md").read_text()
    # Two different files, one each, pair whatever their names; the exit code is the verdict's.
    rc = main(["bench", files["tflite_int8"], "--baseline", files["tflite_fp32"], "--max-time", "3", "--threads", "1",
               "-o", str(tmp_path / "two")])
    (pair,) = json.loads((tmp_path / "two" / "gate.json").read_text())["pairs"]
    assert pair["baseline"] == files["tflite_fp32"] and pair["latency"]["rounds"] >= 10
    assert rc == {"pass": 0, "regression": 1, "inconclusive": 3}[pair["verdict"]["status"]]
    # Rows pair by format name: a candidate with no baseline of its name is a usage error.
    assert main(["bench", files["tflite_int8"], files["onnx_fp32"], "--baseline", files["tflite_int8"],
                 "-o", str(tmp_path / "x")]) == 2
    assert "No baseline for onnx_fp32" in capsys.readouterr().err


def test_stored_baseline_gates_accuracy_and_latency_only_on_the_same_machine(exported, synthetic_folder, tmp_path,
                                                                              capsys):
    import dataclasses

    from deeplab_edge.benchmarks.gate_stored import gate_stored
    from deeplab_edge.benchmarks.results import load_report
    from deeplab_edge.cli import main

    int8 = next(str(f.path) for f in exported[0].files if f.format == "tflite_int8")
    quick = ["--data", str(synthetic_folder), "--eval-images", "4", "--min-runs", "3", "--min-time", "0.02",
             "--warmup", "1", "--threads", "1", "--device", "cpu"]
    assert main(["bench", int8, *quick, "-o", str(tmp_path / "main")]) == 0
    stored = tmp_path / "main" / "bench.json"
    # The same file against its stored report: accuracy equal, and latency judged (same machine) with a warning.
    rc = main(["bench", int8, "--baseline", str(stored), *quick, "--max-miou-drop", "0.5", "--max-slowdown", "50%",
               "--max-class-iou-drop", "1", "-o", str(tmp_path / "g")])
    out = capsys.readouterr().out
    assert rc == 0, out
    (pair,) = json.loads((tmp_path / "g" / "gate.json").read_text())["pairs"]
    # The same file on the same images: every class's IoU equal to the stored one.
    assert pair["miou_verdict"]["status"] == "pass" and pair["class_iou_drops"]
    assert all(v == 0 for v in pair["class_iou_drops"].values())
    assert "no interval" in pair["verdict"]["reason"]
    # A stored baseline that scored higher, on another CPU: an accuracy regression, latency not gated.
    report = load_report(stored)
    better = dataclasses.replace(report, machine={**report.machine, "cpu_model": "Another CPU"},
                                 rows=tuple(dataclasses.replace(r, miou=r.miou + 0.02) for r in report.rows))
    gate = gate_stored(report, better, max_slowdown=0.05, max_miou_drop=0.5, note=lambda m: None)
    (p,) = gate.pairs
    assert p.miou_verdict.status == "regression" and "mIoU drop 2.00 pt > 0.5" in p.miou_verdict.reason
    assert p.verdict.status == "pass" and "latency not gated" in p.verdict.reason and "Another CPU" in p.verdict.reason
    assert gate.exit_code == EXIT_REGRESSION
