"""One writer per kind of file (`formats.FORMATS[name].writer`): TFLite (every precision), ONNX float32,
ONNX int8; the int8 writers also keep layers in float (`keep_float`, `auto_keep_float`).

TF-free at import: TensorFlow, tf2onnx and onnxruntime load when a writer runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deeplab_edge.runtime.metadata import ModelMetadata

from .calibration import Calibration
from .keep_float import (
    DEFAULT_MAX_KEEP_FLOAT,
    Fallback,
    SettingTrial,
    match_layers,
    p50_ms,
    search,
    search_settings,
)
from .options import ExportOptions
from .targets import ChosenTarget, onnx_int8_settings, quant_record, setting_candidates
from .verify import Reference, Thresholds, Verification, verify_file

REPORT_IMAGES = 16  # calibration images the per-layer error report runs (it ranks layers; more adds little)


@dataclass
class Workspace:
    """What the files of one export share: a temporary folder and the float ONNX file the int8 one is made from."""

    tmp: Path
    onnx_fp32: Path | None = None


@dataclass(frozen=True)
class FileJob:
    """Everything a writer needs for one file."""

    fmt: object  # formats.ExportFormat
    path: Path
    graph: object  # the Keras graph to convert (with its pixel-input first op where the file takes one)
    meta: ModelMetadata
    calibration: Calibration | None
    pixel_quant: tuple[float, float] | None  # (mean, std) the int8 input's quantisation realises
    options: ExportOptions
    target: ChosenTarget | None
    ref: Reference
    thresholds: Thresholds
    workspace: Workspace
    progress: object = print
    num_threads: int | None = None


@dataclass(frozen=True)
class Written:
    """What a writer made beside the file: the metadata it carries, and for int8 files the settings and the
    layers kept in float."""

    meta: ModelMetadata
    settings: dict | None = None
    fallback: Fallback | None = None
    extra: dict = field(default_factory=dict)


def _wants_fallback(job: FileJob) -> bool:
    return job.fmt.precision == "int8" and bool(job.options.keep_float or job.options.auto_keep_float)


def write_tflite(job: FileJob) -> Written:
    """A .tflite file at the format's precision; int8 with layers kept in float when asked."""
    from .tflite import export_tflite

    meta, settings = job.meta, None
    if job.fmt.precision == "int8":
        settings = {"per_channel": job.options.per_channel_on}
        meta = replace(meta, quantization=quant_record(job.target, settings))
    if _wants_fallback(job):
        return Written(meta, settings, _tflite_fallback(replace(job, meta=meta)))
    export_tflite(job.graph, job.path, metadata=meta, mode=job.fmt.precision, calibration=job.calibration,
                  io_type=job.options.tflite_io_type, pixel_quant=job.pixel_quant,
                  per_channel=job.options.per_channel_on)
    return Written(meta, settings)


def write_onnx_fp32(job: FileJob) -> Written:
    """The float32 ONNX file (tf2onnx); the int8 writer of the same export quantises this file."""
    from .onnx import export_onnx

    job.workspace.onnx_fp32 = export_onnx(job.graph, job.path, metadata=job.meta, opset=job.options.onnx_opset)
    return Written(job.meta)


def write_onnx_int8(job: FileJob) -> Written:
    """The int8 QDQ ONNX file: onnxruntime's static quantisation of the float file with the target's
    settings (searched first with `auto_keep_float`), nodes kept in float when asked."""
    from .onnx import export_onnx, onnx_int8_writer

    settings = onnx_int8_settings(job.options, job.target)
    meta = replace(job.meta, quantization=quant_record(job.target, settings))
    fp32 = job.workspace.onnx_fp32
    if fp32 is None:
        fp32 = job.workspace.onnx_fp32 = export_onnx(job.graph, job.workspace.tmp / "fp32.onnx", metadata=meta,
                                                     opset=job.options.onnx_opset)
    tried: tuple[SettingTrial, ...] = ()
    if job.options.auto_keep_float:
        settings, tried = _search_onnx_settings(fp32, replace(job, meta=meta), settings)
        meta = replace(meta, quantization=quant_record(job.target, settings))
    write = onnx_int8_writer(fp32, meta, job.calibration, settings)
    if not _wants_fallback(job):
        write(job.path)
        return Written(meta, settings)
    fallback = _onnx_fallback(fp32, write, replace(job, meta=meta))
    return Written(meta, settings, replace(fallback, settings_tried=tried, settings=dict(settings)))


def _search_onnx_settings(fp32: Path, job: FileJob, settings: dict) -> tuple[dict, tuple[SettingTrial, ...]]:
    """`auto_keep_float`, first step: the target's settings and then one change at a time, each quantised,
    verified on the held-out images and timed; the fastest within `max_miou_drop` wins."""
    from .onnx import onnx_int8_writer

    trial = job.workspace.tmp / "setting_trial.onnx"

    def evaluate(candidate: dict):
        onnx_int8_writer(fp32, job.meta, job.calibration, candidate)(trial)
        ver = verify_file(trial, job.ref, "int8", job.thresholds, num_threads=job.num_threads)
        return ver, p50_ms(trial, num_threads=job.num_threads)

    job.progress(f"onnx_int8: trying quantisation settings before keeping layers in float (target "
                 f"{job.target.target.name})")
    return search_settings(settings, setting_candidates(settings, job.options, job.target.target), evaluate,
                           job.thresholds.max_miou_drop, progress=job.progress)


def _tflite_fallback(job: FileJob) -> Fallback:
    """tflite_int8 with layers kept in float: calibrated once, re-quantised per step (fast)."""
    from .quant_report import tflite_report
    from .tflite import calibrate_tflite, quantize_calibrated, tflite_layers, write_tflite

    calibrated = calibrate_tflite(job.graph, job.calibration)

    def make(out: Path, kept: tuple[str, ...] = ()) -> Path:
        data = quantize_calibrated(calibrated, io_type=job.options.tflite_io_type, pixel_quant=job.pixel_quant,
                                   keep_float=kept, per_channel=job.options.per_channel_on)
        return write_tflite(data, out, metadata=job.meta, channels=int(job.graph.output_shape[-1]))

    def rank():
        return tflite_report(calibrated, job.calibration.inputs(REPORT_IMAGES), "tflite_int8",
                             per_channel=job.options.per_channel_on)

    def profiles(int8_file: Path) -> tuple[dict, dict]:
        """Per-op times of the all-int8 file and of its float twin (the calibrated model), by tensor name."""
        from deeplab_edge.benchmarks.profile import profile_tflite
        from deeplab_edge.runtime.backends import default_threads

        twin = job.workspace.tmp / "float_twin.tflite"
        twin.write_bytes(calibrated)
        threads = job.num_threads or default_threads()
        int8, flt = (profile_tflite(f, threads=threads, warmup=2, min_runs=10, min_time_s=0.02,
                                    whole_min_time_s=0.05)
                     for f in (int8_file, twin))
        return {o.name: (o.op_type, o.ms) for o in int8.ops}, {o.name: o.ms for o in flt.ops}

    return _fallback("tflite_int8", tflite_layers(calibrated), make, rank, job, suffix=".tflite", profiles=profiles)


def _onnx_fallback(fp32: Path, make, job: FileJob) -> Fallback:
    """onnx_int8 with nodes kept in float (onnxruntime's nodes_to_exclude): re-calibrated per step."""
    from .onnx import onnx_layers, preprocess_for_quantization
    from .quant_report import onnx_report

    tmp = job.workspace.tmp
    pre = preprocess_for_quantization(fp32, tmp / "pre_fallback.onnx")

    def rank():
        return onnx_report(pre, make(tmp / "plain_int8.onnx"), job.calibration.inputs(REPORT_IMAGES), "onnx_int8")

    return _fallback("onnx_int8", onnx_layers(pre), make, rank, job, suffix=".onnx")


def _fallback(where: str, layers, make, rank, job: FileJob, *, suffix: str, profiles=None) -> Fallback:
    """The `keep_float` layers, then (with `auto_keep_float`) the most harmful ones until the file is within
    `max_miou_drop` of Keras, then (with `auto_keep_float` and per-op `profiles`) the layers whose int8 op is
    slower than its float one, where that makes the whole file faster (`keep_float_speed`); writes the file
    to `job.path` and times it against the all-int8 file."""
    tmp, progress, threads = job.workspace.tmp, job.progress, job.num_threads
    start = match_layers(job.options.keep_float or (), layers, where)
    trial = tmp / f"trial{suffix}"

    def evaluate(kept: tuple[str, ...]) -> Verification:
        return verify_file(make(trial, kept), job.ref, "int8", job.thresholds, num_threads=threads)

    if job.options.auto_keep_float:
        def ranked() -> list[str]:
            progress(f"{where}: ranking layers by quantisation error (per-layer report)")
            return [e.name for e in rank().layers]

        fallback, _ = search(ranked, start, evaluate, job.thresholds.max_miou_drop,
                             job.options.max_keep_float or DEFAULT_MAX_KEEP_FLOAT, progress=progress)
    else:
        fallback = Fallback(start, (), None, True)
    plain = make(tmp / f"all_int8{suffix}")
    if job.options.auto_keep_float and profiles is not None:
        fallback = _speed_step(fallback, layers, make, profiles(plain), job, suffix)
    make(job.path, fallback.kept)
    fallback = replace(fallback, int8_p50_ms=p50_ms(plain, num_threads=threads),
                       kept_p50_ms=p50_ms(job.path, num_threads=threads))
    progress(f"{where}: {len(fallback.kept)} layer(s) kept in float; p50 {fallback.kept_p50_ms:.2f} ms vs "
             f"{fallback.int8_p50_ms:.2f} ms all-int8")
    return fallback


def _speed_step(fallback: Fallback, layers, make, profiles: tuple[dict, dict], job: FileJob, suffix: str) -> Fallback:
    """The latency objective on top of the accuracy one: layers kept in float for speed, measured."""
    from .keep_float_speed import MIN_GAIN, slower_in_int8, speed_search

    int8_ops, float_ops = profiles
    candidates = slower_in_int8(int8_ops, float_ops, [name for name, _ in layers])
    job.progress(f"speed: {len(candidates)} layer(s) run slower in int8 than in float here"
                 + (f" ({', '.join(c.op_type for c in candidates[:5])}{', ...' if len(candidates) > 5 else ''})"
                    if candidates else ""))
    tmp = job.workspace.tmp
    files: dict[tuple[str, ...], Path] = {}  # one file per set of float layers: each trial's is verified and
    # timed, and the accepted one is the next trials' baseline

    def file_for(kept: tuple[str, ...]) -> Path:
        if kept not in files:
            files[kept] = make(tmp / f"speed_{len(files)}{suffix}", kept)
        return files[kept]

    def evaluate(kept: tuple[str, ...]) -> Verification:
        return verify_file(file_for(kept), job.ref, "int8", job.thresholds, num_threads=job.num_threads)

    def compare(kept: tuple[str, ...], base: tuple[str, ...]) -> tuple[float, float, float]:
        from deeplab_edge.benchmarks.gate import estimate, time_paired
        from deeplab_edge.runtime.predictor import load_predictor

        a, b = (load_predictor(file_for(k), num_threads=job.num_threads) for k in (kept, base))
        x = a.prepare([np.zeros((*a.input_size, 3), np.uint8)])[0].copy()
        cand, ref = time_paired(lambda: a.run(x), lambda: b.run(x), max_slowdown=-MIN_GAIN, min_rounds=10,
                                max_rounds=16, max_time_s=4.0)
        est = estimate(cand, ref)
        return est.ratio, est.low, est.high

    choice = speed_search(candidates, fallback.kept, evaluate, compare, job.thresholds.max_miou_drop,
                          max_layers=job.options.max_keep_float or DEFAULT_MAX_KEEP_FLOAT, progress=job.progress)
    return replace(fallback, kept=(*fallback.kept, *choice.kept), speed=choice)
