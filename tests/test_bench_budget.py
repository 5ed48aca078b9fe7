"""The CI budget gate: schema validation and checks on known numbers (no TensorFlow)."""

from __future__ import annotations

import json

import pytest

from deeplab_edge.benchmarks.budget import Budget, check_budget, format_violations, load_budget
from deeplab_edge.benchmarks.results import BenchReport, BenchRow
from deeplab_edge.errors import UserError
from deeplab_edge.runtime.stages import latency_stats


def lat(p50_ms: float):
    return latency_stats([int(p50_ms * 1e6)] * 5)


def report() -> BenchReport:
    return BenchReport(rows=(
        BenchRow(name="keras_fp32", format="keras", backend="keras", latency=lat(40.0), miou=0.62,
                 agreement=1.0, miou_drop=0.0, size_mb=None),
        BenchRow(name="tflite_int8", format="tflite", backend="litert", latency=lat(23.4), miou=0.60,
                 agreement=0.96, miou_drop=2.0, size_mb=1.0),
        BenchRow(name="onnx_fp32", format="onnx", backend="onnxruntime", latency=lat(30.0), miou=0.62,
                 agreement=0.999, miou_drop=0.0, size_mb=3.4),
        BenchRow.skipped("tflite_gpu", "tflite", "litert", "no GPU", device="gpu"),
    ))


def write(tmp_path, obj, name="budget.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_passing_budget(tmp_path):
    budget = load_budget(write(tmp_path, {
        "max_p50_ms": {"tflite_int8": 25, "onnx_fp32": 40, "*": 100},
        "min_miou": {"*": 0.5},
        "max_miou_drop": {"tflite_int8": 2.0, "*": 2.0},  # equal to the measured value passes
        "min_agreement": 0.95,  # bare number == {"*": 0.95}
        "_comment": "ignored",
    }))
    assert budget.limits["min_agreement"] == {"*": 0.95}
    assert check_budget(report(), budget) == []
    assert format_violations([]) == "budget: pass\n"


def test_broken_budget_names_row_limit_and_values():
    budget = Budget.from_dict({"max_p50_ms": {"tflite_int8": 20, "*": 100}, "min_miou": {"keras_fp32": 0.7},
                               "max_miou_drop": {"tflite_int8": 1.0}})
    v = check_budget(report(), budget)
    assert [(x.row, x.limit) for x in v] == [("keras_fp32", "min_miou"), ("tflite_int8", "max_p50_ms"),
                                             ("tflite_int8", "max_miou_drop")]
    p50 = v[1]
    assert (p50.limit_value, p50.measured) == (20.0, pytest.approx(23.4))
    assert p50.message == "tflite_int8: p50 latency 23.4 ms > max_p50_ms 20"
    assert v[0].message == "keras_fp32: mIoU 0.62 < min_miou 0.7"
    assert v[2].message == "tflite_int8: mIoU drop 2 points > max_miou_drop 1"
    text = format_violations(v)
    assert text.startswith("budget: 3 violations") and "max_p50_ms 20" in text
    assert set(v[0].to_dict()) == {"row", "limit", "limit_value", "measured", "message"}


def test_row_override_beats_default():
    assert check_budget(report(), Budget.from_dict({"max_p50_ms": {"keras_fp32": 50, "*": 35}})) == []
    v = check_budget(report(), Budget.from_dict({"max_p50_ms": {"*": 35}}))
    assert [x.row for x in v] == ["keras_fp32"]


def test_missing_or_skipped_named_rows_are_violations():
    v = check_budget(report(), Budget.from_dict({"max_p50_ms": {"tflite_in8": 20, "tflite_gpu": 5}}))
    msgs = [x.message for x in v]
    assert any("tflite_in8: required row missing" in m and "Did you mean: tflite_int8" in m for m in msgs)
    assert "tflite_gpu: required row skipped (no GPU)." in msgs
    # A skipped row covered only by "*" is not a violation.
    assert check_budget(report(), Budget.from_dict({"max_p50_ms": {"*": 100}})) == []


def test_failed_and_unmeasured_rows_are_violations():
    r = BenchReport(rows=(
        BenchRow.failed("onnx_int8", "onnx", "onnxruntime", "quantization raised"),
        BenchRow(name="keras_fp32", format="keras", backend="keras", latency=lat(1.0)),  # no mIoU
    ))
    v = check_budget(r, Budget.from_dict({"min_miou": {"*": 0.5}, "max_size_mb": {"onnx_int8": 5}}))
    assert [x.message for x in v] == [
        "onnx_int8: row failed (quantization raised).",
        "keras_fp32: mIoU not measured, but min_miou 0.5 applies.",
    ]


def test_min_limits_and_other_metrics():
    b = Budget.from_dict({"min_fps": {"tflite_int8": 50}, "max_size_mb": {"onnx_fp32": 3},
                          "min_agreement": {"tflite_int8": 0.97}})
    v = check_budget(report(), b)
    assert {(x.row, x.limit) for x in v} == {("tflite_int8", "min_fps"), ("onnx_fp32", "max_size_mb"),
                                             ("tflite_int8", "min_agreement")}
    assert any(x.message == "onnx_fp32: size 3.4 MB > max_size_mb 3" for x in v)


def test_unknown_key_suggests_close_match(tmp_path):
    path = write(tmp_path, {"max_p50": {"*": 10}})
    with pytest.raises(UserError) as e:
        load_budget(path)
    msg = str(e.value)
    assert str(path) in msg and "'max_p50'" in msg and "Did you mean: max_p50_ms" in msg
    assert "Valid limits: max_p50_ms" in msg


@pytest.mark.parametrize("content, match", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({}, "sets no limits"),
    ({"min_miou": {"*": "high"}}, r"min_miou\['\*'\] must be a finite number >= 0; received 'high'"),
    ({"min_miou": {"*": -1}}, "must be a finite number >= 0"),
    ({"min_miou": {"*": True}}, "must be a finite number"),
    ({"min_miou": [0.5]}, "must be a number or an object"),
    ({"min_miou": {}}, "must be a number or an object"),
])
def test_malformed_budget_names_the_file(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(UserError, match=match) as e:
        load_budget(path)
    assert str(path) in str(e.value)


def test_missing_budget_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_budget(tmp_path / "nope.json")


def test_budget_round_trip():
    b = Budget.from_dict({"max_p50_ms": 20, "min_miou": {"keras_fp32": 0.5}})
    assert Budget.from_dict(b.to_dict()) == b
    assert b.named_rows == ["keras_fp32"]
    assert b.applicable("keras_fp32") == {"max_p50_ms": 20.0, "min_miou": 0.5}
    assert b.applicable("other") == {"max_p50_ms": 20.0}
