"""The performance targets of the project, checked on one benchmark report (measured side by side)."""

from __future__ import annotations

from dataclasses import dataclass

from deeplab_edge.benchmarks.results import BenchReport


@dataclass(frozen=True)
class TargetCheck:
    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be checked (a row is missing or failed)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _p50(report: BenchReport, name: str) -> float | None:
    row = next((r for r in report.rows if r.name == name and r.ok), None)
    return row.p50_ms if row else None


def check_targets(report: BenchReport) -> list[TargetCheck]:
    out: list[TargetCheck] = []
    fp32, int8 = _p50(report, "tflite_fp32"), _p50(report, "tflite_int8")
    vnni = bool(report.machine.get("isa", {}).get("avx512_vnni") or report.machine.get("isa", {}).get("avx_vnni"))
    want = 3.0 if vnni else 1.5
    if fp32 and int8:
        out.append(TargetCheck("tflite int8 speed-up", f">= {want:g}x over tflite fp32 (p50; the target for "
                               f"{'a VNNI' if vnni else 'an AVX2-only'} CPU)", f"{fp32 / int8:.2f}x "
                               f"({fp32:.2f} -> {int8:.2f} ms)", fp32 / int8 >= want))
    else:
        out.append(TargetCheck("tflite int8 speed-up", f">= {want:g}x", "tflite_fp32 or tflite_int8 missing", None))
    ofp, oint = _p50(report, "onnx_fp32"), _p50(report, "onnx_int8")
    out.append(TargetCheck("onnx int8 faster than onnx fp32", "int8 p50 < fp32 p50",
                           f"{ofp:.2f} -> {oint:.2f} ms ({ofp / oint:.2f}x)" if ofp and oint else "row missing",
                           (oint < ofp) if ofp and oint else None))
    for r in report.rows:
        if r.ok and r.miou_drop is not None and r.backend != "keras" and not r.name.endswith("fp32") \
                and r.device == "cpu":
            out.append(TargetCheck(f"{r.name} accuracy", "within 1 mIoU point of the float model",
                                   f"drop {r.miou_drop:+.2f} pt (mIoU {100 * r.miou:.1f}%)", r.miou_drop <= 1.0))
    for r in report.rows:
        if r.ok and r.pre_ms is not None and r.post_ms is not None and r.latency and r.device == "cpu":
            share = (r.pre_ms + r.post_ms) / r.latency.p50_ms
            out.append(TargetCheck(f"{r.name} pre+post", "< 10% of inference time",
                                   f"{r.pre_ms + r.post_ms:.2f} ms = {100 * share:.0f}% of {r.latency.p50_ms:.2f} ms",
                                   share < 0.10))
    return out


def targets_markdown(checks: list[TargetCheck]) -> str:
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for c in checks:
        met = "n/a" if c.met is None else ("yes" if c.met else "**no**")
        lines.append(f"| {c.name} | {c.target} | {c.measured} | {met} |")
    return "\n".join(lines)
