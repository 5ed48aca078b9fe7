"""`--target`: onnx_int8 defaults per CPU family, recorded in the file and the manifest, verification that
says whose kernels judged it, and the automatic search that tries settings before layers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deeplab_edge.errors import UserError
from deeplab_edge.export.options import ExportOptions
from deeplab_edge.export.targets import (
    TARGETS,
    choose_target,
    host_target,
    onnx_int8_settings,
    setting_candidates,
)


def _max_int8_weight(path) -> int:
    """The largest |value| among the int8 weight initialisers of an onnx_int8 file (63 or 64 with 7-bit weights)."""
    model = onnx.load(str(path))
    ws = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return int(max(np.abs(w.astype(np.int32)).max() for w in ws if w.size > 8))


def test_host_target_from_cpu_flags_and_a_note_when_unknown():
    assert host_target({"avx2", "avx512_vnni"}, "x86_64").target.name == "x86-vnni"
    assert host_target({"avx2", "avx_vnni"}, "x86_64").target.name == "x86-vnni"
    assert host_target({"avx2", "fma"}, "x86_64").target.name == "x86-avx2"
    assert host_target({"asimd", "asimddp"}, "aarch64").target.name == "arm64"
    unknown = host_target({"sse4_2"}, "x86_64")
    assert unknown.target.name == "x86-avx2" and "`target`" in unknown.note and "7-bit" in unknown.note
    assert host_target(None, "riscv64").note
    with pytest.raises(UserError, match="Unknown target 'arm'.*arm64"):
        choose_target("arm")
    # Only x86 without VNNI needs 7-bit weights; a given option wins over the target's default.
    assert [TARGETS[t].reduce_range for t in ("arm64", "x86-vnni", "x86-avx2")] == [False, False, True]
    assert onnx_int8_settings(ExportOptions(reduce_range=True), choose_target("arm64"))["reduce_range"] is True
    # The search never tries 8-bit weights for x86-avx2, and never changes what the user set.
    avx2 = onnx_int8_settings(ExportOptions(), choose_target("x86-avx2"))
    assert not any("reduce_range" in d for _, d in setting_candidates(avx2, ExportOptions(), TARGETS["x86-avx2"]))
    arm = onnx_int8_settings(ExportOptions(), choose_target("arm64"))
    tried = [c for c, _ in setting_candidates(arm, ExportOptions(calibration_method="minmax"), TARGETS["arm64"])]
    assert tried[0] == "7-bit weights" and not any("calibration" in c for c in tried)


def test_target_sets_the_weight_range_is_recorded_and_names_the_kernels_it_verified_with(
        trained_tiny, synthetic_folder, tmp_path):
    from deeplab_edge.export import export_checkpoint
    from deeplab_edge.runtime import load_predictor

    ckpt = trained_tiny[0] / "best.keras"
    reports = {t: export_checkpoint(ckpt, tmp_path / t, formats=["onnx_int8"], data=synthetic_folder, eval_images=8,
                                    calibration_count=16, target=t, progress=lambda m: None)
               for t in ("x86-avx2", "arm64")}
    files = {t: r.files[0] for t, r in reports.items()}
    assert _max_int8_weight(files["x86-avx2"].path) <= 64 < _max_int8_weight(files["arm64"].path)
    for t, f in files.items():
        meta = load_predictor(f.path).meta.quantization
        assert meta["target"] == t and meta["reduce_range"] is (t == "x86-avx2")
        from deeplab_edge.runtime import inspect_file

        assert inspect_file(f.path).provenance["for target"].startswith(t)
        entry = json.loads(reports[t].manifest.read_text())["files"][0]["quantization"]
        assert entry["target"] == t and entry["verified_with"].startswith("onnxruntime")
    # This x86 machine is never the arm64 target: the report says the kernels were not the target's.
    arm = files["arm64"].quantization
    assert arm["on_target_kernels"] is False and "x86" in arm["verified_with"]
    assert "NOT the target's" in reports["arm64"].summary()


@pytest.mark.slow  # ~45 s: two exports, 14 quantisations; the search logic itself is tested below, fast
def test_auto_search_picks_the_setting_that_restores_accuracy_and_keeps_no_layer(
        trained_tiny, synthetic_folder, tmp_path):
    """A budget the target's defaults miss by construction (set between the defaults' mIoU drop and the best
    one-change setting's) is met by that setting alone: no layer stays float."""
    from deeplab_edge.export import Thresholds, export_checkpoint

    ckpt = trained_tiny[0] / "best.keras"
    common = dict(formats=["onnx_int8"], data=synthetic_folder, eval_images=8, calibration_count=16, target="arm64",
                  auto_keep_float=True, max_keep_float=1, progress=lambda m: None)
    probe = export_checkpoint(ckpt, tmp_path / "probe", thresholds=Thresholds(max_miou_drop=-100.0), **common)
    tried = probe.files[0].fallback.settings_tried
    assert [t.change for t in tried][:2] == ["defaults", "7-bit weights"] and len(tried) == 7
    best = min(tried[1:], key=lambda t: t.miou_drop)
    assert best.miou_drop < tried[0].miou_drop - 0.05, [(t.change, t.miou_drop) for t in tried]
    budget = (best.miou_drop + min(tried[0].miou_drop, *[t.miou_drop for t in tried[1:] if t is not best])) / 2
    report = export_checkpoint(ckpt, tmp_path / "auto", thresholds=Thresholds(max_miou_drop=budget), **common)
    (f,) = report.files
    within = [t.settings for t in tried[1:] if t.miou_drop <= budget]
    assert f.fallback.met and f.fallback.kept == () and f.fallback.settings in within and best.settings in within
    assert f.quantization["calibration_method"] == f.fallback.settings["calibration_method"]
    assert f.verification.miou_drop <= budget
    assert "tried defaults" in report.summary()


def test_settings_search_tries_changes_only_when_the_defaults_miss_and_takes_the_fastest_within_budget():
    from deeplab_edge.export.keep_float import search, search_settings
    from deeplab_edge.export.verify import Verification

    table = {"defaults": (3.0, 2.0), "a": (0.4, 2.5), "b": (0.3, 2.2), "c": (5.0, 1.0)}  # drop, p50

    def evaluate(settings):
        drop, ms = table[settings["name"]]
        return Verification(True, 4, None, None, 0.99, 0.5, 0.5 + drop / 100, drop, "", ""), ms

    cands = [(n, {"name": n}) for n in ("a", "b", "c")]
    chosen, tried = search_settings({"name": "defaults"}, cands, evaluate, 0.5, progress=lambda m: None)
    assert chosen == {"name": "b"} and [t.change for t in tried] == ["defaults", "a", "b", "c"]
    chosen, tried = search_settings({"name": "defaults"}, cands, evaluate, 0.1, progress=lambda m: None)
    assert chosen == {"name": "b"} and not any(t.met for t in tried)  # none within: the most accurate
    chosen, tried = search_settings({"name": "defaults"}, cands, evaluate, 5.0, progress=lambda m: None)
    assert chosen == {"name": "defaults"} and len(tried) == 1  # the defaults hold: nothing else tried
    ok = Verification(True, 4, None, None, 0.99, 0.5, 0.5, 0.0, "", "")
    fb, _ = search(lambda: pytest.fail("ranked without need"), (), lambda kept: ok, 0.5, progress=lambda m: None)
    assert fb.met and fb.kept == ()


@pytest.mark.slow  # builds (or reuses) the aarch64 runtime under qemu: apt and pip downloads, minutes
def test_verify_on_target_runs_the_arm_kernels_under_qemu(trained_tiny, synthetic_folder, tmp_path):
    from deeplab_edge.export import export_checkpoint

    report = export_checkpoint(trained_tiny[0] / "best.keras", tmp_path / "arm", formats=["tflite_int8", "onnx_int8"],
                               data=synthetic_folder, eval_images=8, calibration_count=16, target="arm64",
                               verify_on_target=True, progress=lambda m: None)
    for f in report.files:
        tv = f.quantization["target_verification"]
        assert "qemu" in tv["kernels"] and tv["images"] == 8
        # The Arm kernels and this machine's agree closely on the same int8 file.
        assert abs(tv["miou"] - f.verification.miou) < 0.03 and tv["agreement"] > 0.9
        assert f.passed == (f.verification.passed and tv["passed"])
    assert "on the target's kernels (aarch64 runtime under qemu" in report.summary()
