"""`export_all`: checkpoint -> every chosen format, each verified, plus manifest.json."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from deeplab_edge import __version__
from deeplab_edge.errors import UserError
from deeplab_edge.fileio import sha256, write_bytes_atomic
from deeplab_edge.model.data import denormalize_np
from deeplab_edge.runtime.metadata import ModelMetadata

from .calibration import Calibration, calibration_and_verification
from .formats import FORMATS, ExportFormat, check_options, resolve_formats
from .keep_float import (
    DEFAULT_MAX_KEEP_FLOAT,
    Fallback,
    SettingTrial,
    match_layers,
    p50_ms,
    search,
    search_settings,
)
from .spec import ModelSpec, model_spec
from .targets import ChosenTarget, choose_target, onnx_int8_settings, same_kernels, setting_candidates
from .verify import Thresholds, Verification, keras_reference, verify_file


@dataclass(frozen=True)
class ExportedFile:
    format: str
    path: Path
    size_bytes: int
    sha256: str
    seconds: float
    verification: Verification
    ops: dict
    fallback: Fallback | None = None  # layers kept in float (--keep-float, --auto-keep-float)
    quantization: dict | None = None  # int8 files: target, settings, and whose kernels verified the file

    @property
    def passed(self) -> bool:
        """Verified, and on the target's kernels too where that ran (--verify-on-target)."""
        on_target = (self.quantization or {}).get("target_verification")
        return self.verification.passed and (on_target is None or bool(on_target["passed"]))

    def to_dict(self) -> dict:
        fmt = FORMATS[self.format]
        out = {"file": self.path.name, "format": self.format, "backend": fmt.backend, "precision": fmt.precision,
               "size_bytes": self.size_bytes, "sha256": self.sha256, "conversion_seconds": round(self.seconds, 3),
               "verification": self.verification.to_dict(), "ops": self.ops}
        if self.fallback is not None:
            out["keep_float"] = self.fallback.to_dict()
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        return out


@dataclass(frozen=True)
class ExportReport:
    out_dir: Path
    files: tuple[ExportedFile, ...]
    manifest: Path
    model: dict = field(default_factory=dict)
    verify_images: int = 0  # held-out images every file was verified on

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def table(self) -> str:
        head = f"{'format':<15} {'size':>9} {'convert':>8}  {'verification':<54} result"
        lines = [head, "-" * len(head)]
        for f in self.files:
            lines.append(f"{f.format:<15} {f.size_bytes / 1e6:>7.2f}MB {f.seconds:>7.1f}s  "
                         f"{f.verification.figure:<54} {'PASS' if f.verification.passed else 'FAIL'}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The table, the layers kept in float per file, Keras's mIoU and where the manifest is."""
        lines = [self.table()]
        for f in self.files:
            q = f.quantization
            if q is not None:
                where = "the target's" if q["on_target_kernels"] else "NOT the target's"
                lines.append(f"{f.format}: made for {q['target']} ({q['target_chosen']}); verified with "
                             f"{q['verified_with']}: {where}")
                tv = q.get("target_verification")
                if tv:
                    lines.append(f"  on the target's kernels ({tv['kernels']}): {tv['figure']} "
                                 f"{'PASS' if tv['passed'] else 'FAIL'}")
            fb = f.fallback
            if fb is None:
                continue
            for t in fb.settings_tried:
                lines.append(f"  tried {t.change}: mIoU drop {t.miou_drop:.2f} pt, p50 {t.p50_ms:.2f} ms"
                             + (" (within budget)" if t.met else ""))
            budget = f" (auto, budget {fb.budget:g} pt: {'met' if fb.met else 'NOT met'})" if fb.budget is not None else ""
            lines.append(f"{f.format}: {len(fb.kept)} layer(s) kept in float{budget}; p50 {fb.kept_p50_ms:.2f} ms vs "
                         f"{fb.int8_p50_ms:.2f} ms all-int8")
            lines += [f"  {layer}" for layer in fb.kept]
        lines.append(f"\nKeras mIoU on the same {self.verify_images} images: {100 * self.model['keras_miou']:.1f}%; "
                     f"manifest: {self.manifest}")
        return "\n".join(lines)


def export_graph(model, info, *, input_size: tuple[int, int] | None = None):
    """The graph to convert: ours rebuilt with exact folding and native dilation (trained weights mapped
    over); a model built elsewhere as it is, given a fixed input size when its own is dynamic."""
    from deeplab_edge.model.deeplab import rebuild
    if info is not None and info.extra.get("qat"):  # already the export graph, with fake quantisation
        if input_size is not None and tuple(input_size) != tuple(info.config.input_size):
            raise UserError("A quantisation-aware checkpoint exports at the size it was fine-tuned at "
                            f"({info.config.input_size[0]}x{info.config.input_size[1]}); drop --input-size.")
        return model
    if info is not None:
        return rebuild(model, info.config, fold_atrous=True, native_dilation=True, input_size=input_size)
    own = tuple(model.input_shape[1:3])
    if None in own:
        if input_size is None:
            raise UserError(f"The model takes inputs of any size {model.input_shape}; pass --input-size H W to "
                            "export it at a fixed size.")
        from deeplab_edge.model._keras import keras

        inp = keras.Input((*input_size, model.input_shape[-1]), name="image")
        return keras.Model(inp, model(inp), name=model.name)
    if input_size is not None and tuple(input_size) != own:
        raise UserError(f"The model was built for {own[0]}x{own[1]} inputs and was not trained by deeplab-edge, so "
                        f"it cannot be rebuilt at {input_size[0]}x{input_size[1]}; drop --input-size.")
    return model


def formats_for(info, names: list[str] | None) -> list[ExportFormat]:
    """The formats to write (`resolve_formats`); a quantisation-aware checkpoint writes tflite_int8 only
    (its fake-quantisation ranges become the file's int8 parameters)."""
    if info is None or not info.extra.get("qat"):
        return resolve_formats(names)
    if not names:
        return [FORMATS["tflite_int8"]]
    chosen = resolve_formats(names)
    if [f.name for f in chosen] != ["tflite_int8"]:
        raise UserError(f"A quantisation-aware checkpoint exports tflite_int8 only; received "
                        f"{', '.join(f.name for f in chosen)}. Export the float checkpoint it came from "
                        f"({info.extra['qat'].get('from', '?')}) for the other formats.")
    return chosen


LOGITS_AT = ("input", "stride")
PIXELS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the mean/std of a file that normalises its uint8 input itself


@dataclass(frozen=True)
class PixelPlan:
    """How one file takes raw pixels: a normalising first op, its int8 input's quantisation, or neither."""

    first_op: bool = False
    input_quantization: tuple[float, float] | None = None  # (mean, std) realised by the 8-bit input
    normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # what the metadata says


def pixel_plan(fmt: ExportFormat, spec: ModelSpec, pixel_input: bool) -> PixelPlan:
    """TFLite files take pixels when `pixel_input`: full-int8 through its uint8 input's quantisation when one
    mean/std serves all channels (round(mean): 127.5 -> 128, half a grey level), else a first op
    (cast, mul, add) that the int8 converter quantises too. ONNX files keep normalised float32 inputs:
    onnxruntime ran the int8 file with the first op 51% slower (14.8 vs 9.8 ms, AVX2 EPYC). 16x8 files keep
    float32 inputs (their activations are int16; a uint8 input has no 16x8 requantisation)."""
    if not pixel_input or fmt.backend != "tflite" or fmt.precision == "int16x8":
        return PixelPlan()
    if fmt.precision == "int8" and len(set(spec.mean)) == 1 and len(set(spec.std)) == 1:
        mean, std = float(round(spec.mean[0])), spec.std[0]
        return PixelPlan(False, (mean, std), ((mean,) * 3, (std,) * 3))
    return PixelPlan(True, (0.0, 1.0) if fmt.precision == "int8" else None, PIXELS)


def make_metadata(info, spec: ModelSpec, input_size, fmt: ExportFormat, head: str, *,
                  normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> ModelMetadata:
    mean, std = normalisation or (spec.mean, spec.std)
    return ModelMetadata(
        class_names=spec.class_names, input_size=tuple(input_size), mean=mean, std=std,
        layout="NHWC", output="labels" if head == "labels" else spec.output, threshold=spec.threshold,
        preset=(info.preset if info else ""), variant=fmt.name, version=__version__,
        config=(info.config.to_dict() if info else {}),
    )


def planned_paths(out_dir: Path, name: str, formats: list[ExportFormat]) -> dict[str, Path]:
    return {f.name: Path(out_dir) / f"{name}{f.suffix}" for f in formats}


def check_free(out_dir: Path, name: str, formats: list[ExportFormat], force: bool) -> None:
    """Refuse to overwrite existing outputs (including manifest.json) unless `force`."""
    if force:
        return
    targets = [*planned_paths(Path(out_dir), name, formats).values(), Path(out_dir) / "manifest.json"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UserError(f"{', '.join(existing)} already exist(s); pass --force to overwrite.")


def export_all(model, info, out_dir: str | Path, *, name: str = "model", formats: list[str] | None = None,
               options: dict | None = None, calibration: Calibration | None = None,
               verify_images: np.ndarray | None = None, verify_masks: np.ndarray | None = None,
               thresholds: Thresholds | None = None, force: bool = False, head: str = "logits",
               input_size: tuple[int, int] | None = None, num_threads: int | None = None,
               progress=print, checkpoint: str | Path | None = None, spec: ModelSpec | None = None,
               pixel_input: bool = True, logits_at: str = "input", note=None) -> ExportReport:
    """Export `model` (from `load_checkpoint`) to each format, verify each file, and write manifest.json.

    `spec` (classes, normalisation, output kind) defaults to what the checkpoint's model info says.
    `verify_images` are normalised as the spec says. `pixel_input` (default): TFLite files take raw uint8 RGB
    pixels and normalise them themselves (see `pixel_plan`; ONNX and 16x8 files keep normalised float32
    inputs); False: every file takes normalised float32 as the Keras model does. `logits_at`
    "stride": the files output logits at the decoder's stride (input / 4) and leave the upsampling to
    the runtime; "input" (default): logits upsampled bilinearly to the input size inside the file.
    `note` (default: `progress`) takes the lines a user must see even when steps are hidden."""
    from deeplab_edge.model.flops import model_cost

    from .onnx import export_onnx, onnx_op_histogram
    from .tflite import export_tflite, op_histogram

    options = dict(options or {})
    note = progress if note is None else note
    thresholds = thresholds or Thresholds()
    if head not in ("logits", "labels"):
        raise UserError(f"head must be 'logits' or 'labels'; received {head!r}.")
    if logits_at not in LOGITS_AT:
        raise UserError(f"logits_at must be one of {', '.join(LOGITS_AT)}; received {logits_at!r}.")
    if logits_at == "stride" and info is not None and info.extra.get("qat"):
        raise UserError("--logits-at stride is not available for a quantisation-aware checkpoint; drop it.")
    if logits_at == "stride" and info is None:
        raise UserError("--logits-at stride cuts a deeplab-edge DeepLabV3+ graph before its final upsampling; "
                        f"{checkpoint or 'this model'} was not trained by deeplab-edge. Drop --logits-at.")
    chosen = formats_for(info, formats)
    check_options(chosen, options)
    qat = (info.extra.get("qat") or {}) if info is not None else {}
    if qat.get("per_tensor"):  # the file quantises as the fine-tuning did
        if options.get("per_channel"):
            raise UserError("This checkpoint was fine-tuned with per-tensor weights (--qat-per-tensor); drop "
                            "--per-channel.")
        options["per_channel"] = False
    target = choose_target(options.get("target")) if any(f.precision == "int8" for f in chosen) else None
    if target is not None and target.note:
        note(f"note: {target.note}")
    on_target, host_kernels = same_kernels(target.target) if target is not None else (True, "")
    out_dir = Path(out_dir)
    paths = planned_paths(out_dir, name, chosen)
    manifest_path = out_dir / "manifest.json"
    check_free(out_dir, name, chosen, force)
    if any(f.needs_calibration for f in chosen) and calibration is None:
        raise UserError("Int8 formats need calibration images: pass --data (a folder with training images).")
    if verify_images is None or verify_masks is None or len(verify_images) == 0:
        raise UserError("Verification needs held-out images with masks: pass --data with a validation split.")
    spec = spec or model_spec(model, info, None, checkpoint=checkpoint)
    if head == "labels" and spec.channels == 1:
        raise UserError("--head labels puts an argmax inside the model, which a one-channel (foreground score) "
                        "output does not have; export it with the default --head logits.")
    out_dir.mkdir(parents=True, exist_ok=True)

    from deeplab_edge.model.layers import at_decoder_stride, with_label_head, with_pixel_input

    full_graph = export_graph(model, info, input_size=input_size)
    logits_graph = at_decoder_stride(full_graph) if logits_at == "stride" else full_graph
    graph = with_label_head(logits_graph) if head == "labels" else logits_graph
    size = tuple(graph.input_shape[1:3])
    class_names = spec.class_names
    progress(f"computing Keras reference outputs on {len(verify_images)} held-out images")
    ref = keras_reference(logits_graph, verify_images, verify_masks, spec)
    # The rebuilt (folded, native-dilation) graph must compute what the checkpoint computes.
    fold_diff = None
    if info is not None and input_size in (None, tuple(info.config.input_size)):
        rebuilt = full_graph.predict(verify_images[:4], verbose=0)
        fold_diff = float(np.abs(rebuilt - model.predict(verify_images[:4], verbose=0)).max())
        scale = max(1.0, float(np.abs(rebuilt).max()))
        if fold_diff > 1e-4 * scale:
            raise UserError(f"The rebuilt export graph (folded, native dilation) differs from the checkpoint by "
                            f"{fold_diff:.2e} (logit scale {scale:.1f}); this is a bug: please report it, and "
                            "export meanwhile with the checkpoint as it is.")
    cost = model_cost(logits_graph)
    results: list[ExportedFile] = []
    pixel_calibration: Calibration | None = None  # the calibration images as pixels, made once if needed
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-export-") as tmpdir:
        onnx_fp32: Path | None = None
        for fmt in chosen:
            path = paths[fmt.name]
            how = pixel_plan(fmt, spec, pixel_input)
            meta = make_metadata(info, spec, size, fmt, head, normalisation=how.normalisation)
            progress(f"exporting {fmt.name} -> {path.name}")
            t0 = time.perf_counter()
            file_graph, file_calibration = graph, calibration
            if how.first_op:  # the full-integer converter quantises a float 0..255 input to uint8 itself
                file_graph = with_pixel_input(graph, spec.mean, spec.std,
                                              dtype="float32" if fmt.precision == "int8" else "uint8")
                if calibration is not None and fmt.needs_calibration:  # on the pixels the file will take
                    if pixel_calibration is None:
                        pixel_calibration = Calibration(denormalize_np(calibration.images, spec.mean, spec.std),
                                                        calibration.source)
                    file_calibration = pixel_calibration
            fallback, settings = None, None
            if fmt.precision == "int8":
                settings = (onnx_int8_settings(options, target) if fmt.backend == "onnx"
                            else {"per_channel": options.get("per_channel") is not False})
                meta = replace(meta, quantization=_quant_record(target, settings))
            wants_fallback = fmt.precision == "int8" and (options.get("keep_float") or options.get("auto_keep_float"))
            if fmt.backend == "tflite" and wants_fallback:
                fallback = _tflite_fallback(file_graph, file_calibration, path, meta, how, options, ref, thresholds,
                                            Path(tmpdir), progress, num_threads)
            elif fmt.backend == "tflite":
                export_tflite(file_graph, path, metadata=meta, mode=fmt.precision, calibration=file_calibration,
                              io_type=options.get("io_type") or "float32", pixel_quant=how.input_quantization,
                              per_channel=options.get("per_channel") is not False)
            elif fmt.precision == "fp32":
                onnx_fp32 = export_onnx(file_graph, path, metadata=meta, opset=options.get("opset") or 17)
            else:
                if onnx_fp32 is None:
                    onnx_fp32 = export_onnx(file_graph, Path(tmpdir) / "fp32.onnx", metadata=meta,
                                            opset=options.get("opset") or 17)
                tried: tuple[SettingTrial, ...] = ()
                if options.get("auto_keep_float"):
                    settings, tried = _search_onnx_settings(onnx_fp32, meta, file_calibration, settings, options,
                                                            target, ref, thresholds, Path(tmpdir), progress,
                                                            num_threads)
                    meta = replace(meta, quantization=_quant_record(target, settings))
                onnx_int8 = _onnx_int8_writer(onnx_fp32, meta, file_calibration, settings)
                if wants_fallback:
                    fallback = _onnx_fallback(onnx_fp32, onnx_int8, file_calibration, path, options, ref, thresholds,
                                              Path(tmpdir), progress, num_threads)
                    fallback = replace(fallback, settings_tried=tried, settings=dict(settings))
                else:
                    onnx_int8(path)
            seconds = time.perf_counter() - t0
            progress(f"verifying {fmt.name} on {len(ref.images)} images")
            ver = verify_file(path, ref, fmt.precision, thresholds, num_threads=num_threads)
            ops = op_histogram(path) if fmt.backend == "tflite" else onnx_op_histogram(path)
            quant = None
            if settings is not None:
                kernels = f"{'onnxruntime' if fmt.backend == 'onnx' else 'LiteRT XNNPACK'} {host_kernels}"
                if not on_target:
                    note(f"note: {fmt.name} is made for {target.target.name}; its verification ran on {kernels}, "
                         "not the target's" + (" (--verify-on-target runs it again with the Arm kernels under qemu)"
                                               if target.target.name == "arm64"
                                               and not options.get("verify_on_target") else ""))
                quant = {**meta.quantization, "verified_with": kernels, "on_target_kernels": on_target}
            results.append(ExportedFile(fmt.name, path, path.stat().st_size, sha256(path), seconds, ver, ops, fallback,
                                        quant))

    if options.get("verify_on_target") and target is not None:
        results = _verify_on_target(results, target, ref, thresholds, progress, note)
    from deeplab_edge.model.foreign import source_of

    source = source_of(model)
    macs_from = "Keras layers"
    if source is not None:  # a wrapped model has no Keras layers to count: count the float TFLite file's ops
        from .tflite import tflite_cost

        fp32 = next((r.path for r in results if r.format == "tflite_fp32"), None)
        if fp32 is not None:
            tcost = tflite_cost(fp32)
            cost = replace(cost, macs=tcost.macs, macs_by_type=tcost.macs_by_type)
            macs_from = "the tflite_fp32 file's ops"
        else:
            macs_from = "not counted (no tflite_fp32 file)"
    model_info = {"checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
                  "source": source.to_dict() if source is not None else {"kind": "deeplab-edge" if info else "tf-keras"}, "preset": info.preset if info else "", "config": info.config.to_dict() if info else {},
                  "input_size": list(size), "head": head, "class_names": list(class_names),
                  "pixel_input": pixel_input, "logits_at": logits_at, "output_size": list(graph.output_shape[1:3]),
                  "mean": list(spec.mean), "std": list(spec.std), "output": spec.output, "notes": list(spec.notes),
                  "params": cost.params, "macs": cost.macs, "macs_by_type": cost.macs_by_type, "macs_from": macs_from,
                  "keras_miou": ref.miou, "rebuild_max_abs_diff": fold_diff}
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deeplab_edge_version": __version__,
        "model": model_info,
        "calibration": {"source": calibration.source, "images": len(calibration)} if calibration else None,
        "verification": {"images": len(ref.images), "thresholds": thresholds.to_dict()},
        "files": [r.to_dict() for r in results],
    }
    write_bytes_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
    return ExportReport(out_dir, tuple(results), manifest_path, model_info, len(ref.images))


def _verify_on_target(results: list[ExportedFile], target: ChosenTarget, ref, thresholds: Thresholds,
                      progress, note) -> list[ExportedFile]:
    """The int8 files verified again with the target's own kernels where this machine can run them: arm64
    under qemu (the aarch64 runtime: onnxruntime's and XNNPACK's Arm kernels). Recorded beside the host's
    verification as `quantization.target_verification`; a failure there fails the file."""
    todo = [r for r in results if r.quantization is not None and not r.quantization["on_target_kernels"]]
    if not todo:
        return results
    if target.target.name != "arm64":
        note(f"note: --verify-on-target: this machine cannot run the {target.target.name} kernels (only "
             "arm64, under qemu); the files were verified with this machine's")
        return results
    from deeplab_edge.benchmarks.aarch64_check import VERIFY_CPU as cpu
    from deeplab_edge.benchmarks.aarch64_check import CheckError, SetupError, arm_labels
    from deeplab_edge.model.data import denormalize_np

    from .verify import verify_outputs

    progress(f"verifying {', '.join(r.format for r in todo)} with the Arm kernels: the aarch64 runtime under qemu "
             f"({cpu}; the first run builds it, minutes)")
    try:
        labels = arm_labels([r.path for r in todo], denormalize_np(ref.images, ref.spec.mean, ref.spec.std), cpu=cpu)
    except (SetupError, CheckError) as e:
        raise UserError(f"--verify-on-target could not run the aarch64 runtime: {e}") from None
    out = []
    for r in results:
        if r in todo:
            ver = verify_outputs(None, labels[r.path], ref, "int8", thresholds)
            progress(f"{r.format} on Arm kernels (qemu {cpu}): {ver.figure} -> {'PASS' if ver.passed else 'FAIL'}")
            r = replace(r, quantization={**r.quantization, "target_verification": {
                **ver.to_dict(), "kernels": f"aarch64 runtime under qemu ({cpu}): the Arm kernels"}})
        out.append(r)
    return out


def _quant_record(target: ChosenTarget, settings: dict) -> dict:
    """What an int8 file records of its making (metadata and manifest)."""
    return {"target": target.target.name, "target_chosen": target.how, **settings}


def _onnx_int8_writer(fp32: Path, meta: ModelMetadata, calibration: Calibration, settings: dict):
    """`write(out, kept=())`: the onnx_int8 file of `fp32` with `settings` (`targets.onnx_int8_settings`),
    `kept` nodes left float."""
    from .onnx import export_onnx_int8

    def write(out: Path, kept: tuple[str, ...] = ()) -> Path:
        return export_onnx_int8(
            fp32, out, metadata=meta, calibration=calibration, per_channel=settings["per_channel"],
            method=settings["calibration_method"], nodes_to_exclude=kept, activation_type=settings["activation_type"],
            reduce_range=settings["reduce_range"], quant_format=settings["quant_format"],
            symmetric_activations=settings["symmetric_activations"])

    return write


def _search_onnx_settings(fp32: Path, meta: ModelMetadata, calibration: Calibration, settings: dict, options: dict,
                          target: ChosenTarget, ref, thresholds: Thresholds, tmp: Path, progress,
                          num_threads) -> tuple[dict, tuple[SettingTrial, ...]]:
    """--auto-keep-float, first step: the target's settings and then one change at a time, each quantised,
    verified on the held-out images and timed; the fastest within --max-miou-drop wins."""
    trial = tmp / "setting_trial.onnx"

    def evaluate(candidate: dict):
        _onnx_int8_writer(fp32, meta, calibration, candidate)(trial)
        ver = verify_file(trial, ref, "int8", thresholds, num_threads=num_threads)
        return ver, p50_ms(trial, num_threads=num_threads)

    progress(f"onnx_int8: trying quantisation settings before keeping layers in float (target {target.target.name})")
    return search_settings(settings, setting_candidates(settings, options, target.target), evaluate,
                           thresholds.max_miou_drop, progress=progress)


REPORT_IMAGES = 16  # calibration images the per-layer error report runs (it ranks layers; more adds little)


def _tflite_fallback(graph, calibration: Calibration, path: Path, meta: ModelMetadata, how: PixelPlan, options: dict,
                     ref, thresholds: Thresholds, tmp: Path, progress, num_threads) -> Fallback:
    """tflite_int8 with layers kept in float: calibrated once, re-quantised per step (fast)."""
    from .quant_report import tflite_report
    from .tflite import calibrate_tflite, quantize_calibrated, tflite_layers, write_tflite

    calibrated = calibrate_tflite(graph, calibration)

    def make(out: Path, kept: tuple[str, ...] = ()) -> Path:
        data = quantize_calibrated(calibrated, io_type=options.get("io_type") or "float32",
                                   pixel_quant=how.input_quantization, keep_float=kept,
                                   per_channel=options.get("per_channel") is not False)
        return write_tflite(data, out, metadata=meta, channels=int(graph.output_shape[-1]))

    per_channel = options.get("per_channel") is not False
    return _fallback("tflite_int8", tflite_layers(calibrated), make,
                     lambda: tflite_report(calibrated, calibration.images[:REPORT_IMAGES], "tflite_int8",
                                           per_channel=per_channel),
                     path, options, ref, thresholds, tmp, progress, num_threads, suffix=".tflite")


def _onnx_fallback(fp32: Path, make, calibration: Calibration, path: Path, options: dict, ref, thresholds: Thresholds,
                   tmp: Path, progress, num_threads) -> Fallback:
    """onnx_int8 with nodes kept in float (onnxruntime's nodes_to_exclude): re-calibrated per step."""
    from .onnx import onnx_layers, preprocess_for_quantization
    from .quant_report import onnx_report

    pre = preprocess_for_quantization(fp32, tmp / "pre_fallback.onnx")

    def rank():
        return onnx_report(pre, make(tmp / "plain_int8.onnx"), calibration.images[:REPORT_IMAGES], "onnx_int8")

    return _fallback("onnx_int8", onnx_layers(pre), make, rank, path, options, ref, thresholds, tmp, progress,
                     num_threads, suffix=".onnx")


def _fallback(where: str, layers, make, rank, path: Path, options: dict, ref, thresholds: Thresholds, tmp: Path,
              progress, num_threads, *, suffix: str) -> Fallback:
    """The --keep-float layers, then (with --auto-keep-float) the most harmful ones until the file is within
    --max-miou-drop of Keras; writes the file to `path` and times it against the all-int8 file."""

    start = match_layers(options.get("keep_float") or (), layers, where)
    trial = tmp / f"trial{suffix}"

    def evaluate(kept: tuple[str, ...]) -> Verification:
        return verify_file(make(trial, kept), ref, "int8", thresholds, num_threads=num_threads)

    if options.get("auto_keep_float"):
        def ranked() -> list[str]:
            progress(f"{where}: ranking layers by quantisation error (per-layer report)")
            return [e.name for e in rank().layers]

        fallback, _ = search(ranked, start, evaluate, thresholds.max_miou_drop,
                             options.get("max_keep_float") or DEFAULT_MAX_KEEP_FLOAT, progress=progress)
    else:
        fallback = Fallback(start, (), None, True)
    make(path, fallback.kept)
    plain = make(tmp / f"all_int8{suffix}")
    fallback = replace(fallback, int8_p50_ms=p50_ms(plain, num_threads=num_threads),
                       kept_p50_ms=p50_ms(path, num_threads=num_threads))
    progress(f"{where}: {len(fallback.kept)} layer(s) kept in float; p50 {fallback.kept_p50_ms:.2f} ms vs "
             f"{fallback.int8_p50_ms:.2f} ms all-int8")
    return fallback


def load_for_export(checkpoint: str | Path, data: str | Path | None, name: str | None, options=None):
    """(model, info or None, dataset, name) for `checkpoint`, checked to be exportable: one image input, one
    (N, H, W, C) score output, as many classes as the dataset (`data`, else the one it was trained on,
    else the built-in demo set). `options`: how to load a model built elsewhere (`foreign.LoadOptions`)."""
    from deeplab_edge.model.checkpoint import load_checkpoint
    from deeplab_edge.model.data import open_dataset

    model, info = load_checkpoint(checkpoint, options=options)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{checkpoint} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; export takes "
                        "a segmentation model with one image input and one score output.")
    if len(model.output_shape) != 4:
        raise UserError(f"{checkpoint} outputs shape {model.output_shape}; export takes a segmentation model whose "
                        "output is (N, H, W, classes) scores (or (N, H, W, 1) for a foreground score).")
    ds = open_dataset(data or (info.extra.get("dataset") if info else None))
    channels = int(model.output_shape[-1])
    if (2 if channels == 1 else channels) != ds.num_classes:
        what = "a one-channel foreground score (2 classes)" if channels == 1 else f"{channels} classes"
        raise UserError(f"The model predicts {what} but {ds.root} has {ds.num_classes}: pass --data with the "
                        "dataset it was trained on.")
    stem = Path(checkpoint).resolve().stem if Path(checkpoint).is_dir() else Path(checkpoint).stem
    return model, info, ds, name or (info.preset if info and info.preset else (stem if info is None else "model"))


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path = "exported", *, formats: list[str] | None = None,
                      data: str | Path | None = None, name: str | None = None, head: str = "logits",
                      pixel_input: bool = True, logits_at: str = "input", input_size: tuple[int, int] | None = None,
                      eval_images: int = 100, thresholds: Thresholds | None = None, num_threads: int | None = None,
                      class_names: str | list[str] | None = None, input_scale: str | None = None,
                      mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                      load=None, calibration_data: str | Path | None = None, force: bool = False,
                      progress=print, note=None, **format_options) -> ExportReport:
    """`deeplab-edge export` from Python: load `checkpoint` (ours, or any Keras 2/3 .keras/.h5 file or
    SavedModel folder), export each of `formats` (default: all but tflite_int16x8) to `out_dir`, verify each
    file against Keras on `eval_images` held-out images of `data` (default: the dataset it was trained on,
    else the built-in demo set), and write manifest.json. Returns the `ExportReport` (`.passed`, `.table()`).

    `format_options` are the per-format keys of `formats.OPTION_HELP` (calibration_count, io_type, opset,
    per_channel, activation_type, reduce_range, calibration_method, keep_float, auto_keep_float,
    max_keep_float); one that no chosen format accepts is refused before any work. `class_names`,
    `input_scale`, `mean`, `std`: how a model not trained by deeplab-edge was trained. `load`: a
    `model.foreign.LoadOptions`. Steps go to `progress` and notes (what was assumed or should be known)
    to `note`, callables taking one line; `note` defaults to `progress`."""
    note = progress if note is None else note
    check_options(resolve_formats(formats), format_options)  # before any heavy work
    if input_size is not None and min(input_size) <= 0:
        raise UserError(f"input_size (--input-size) must be positive; received {tuple(input_size)}.")
    if eval_images <= 0:
        raise UserError(f"eval_images (--eval-images) must be positive; received {eval_images}.")
    if load is None:
        from deeplab_edge.model.foreign import LoadOptions

        load = LoadOptions(input_size=tuple(input_size) if input_size else None)
    model, info, ds, name = load_for_export(checkpoint, data, name, load)
    chosen = formats_for(info, formats)
    if input_size and info is not None:
        from deeplab_edge.model.deeplab import check_input_size

        check_input_size(info.config.replace(input_size=tuple(input_size)))
    elif input_size and None not in model.input_shape[1:3] and tuple(input_size) != tuple(model.input_shape[1:3]):
        raise UserError(f"{checkpoint} was built for {model.input_shape[1]}x{model.input_shape[2]} inputs and "
                        "has no deeplab-edge model info to rebuild it from; drop input_size (--input-size).")
    out_dir = Path(out_dir)
    check_free(out_dir, name, chosen, force)
    spec = model_spec(model, info, ds, checkpoint=checkpoint, class_names=class_names, mean=mean, std=std,
                      input_scale=input_scale)
    for line in spec.notes:
        note(f"note: {line}")
    if any(f.name == "tflite_int8" for f in chosen) and format_options.get("io_type") in ("int8", "uint8"):
        note(f"note: tflite_int8 takes {format_options['io_type']} input: MediaPipe Tasks' ImageSegmenter "
             "accepts only float32/uint8 inputs and float outputs; for a MediaPipe app leave io_type at float32")
    size = tuple(input_size) if input_size else tuple(model.input_shape[1:3])
    if None in size:
        raise UserError(f"{checkpoint} takes inputs of any size {model.input_shape}; pass input_size "
                        "(--input-size H W).")
    calibration, vx, vy = calibration_and_verification(
        ds, size, chosen, format_options.get("calibration_count"), eval_images, spec.mean, spec.std,
        progress=progress, calibration_data=calibration_data)
    return export_all(model, info, out_dir, name=name, formats=[f.name for f in chosen], options=format_options,
                      calibration=calibration, verify_images=vx, verify_masks=vy, thresholds=thresholds,
                      force=force, head=head, input_size=tuple(input_size) if input_size else None,
                      num_threads=num_threads, progress=progress, checkpoint=checkpoint, spec=spec,
                      pixel_input=pixel_input, logits_at=logits_at, note=note)


def quant_report(model, info, fmt_name: str, calibration: Calibration, spec: ModelSpec, *,
                 images: int = REPORT_IMAGES, options: dict | None = None):
    """The per-layer error report (`quant_report.QuantReport`) of the int8 file `fmt_name` (tflite_int8 or
    onnx_int8) that export would write, on `images` of the calibration images (normalised inputs)."""
    from .onnx import export_onnx, preprocess_for_quantization
    from .quant_report import onnx_report, tflite_report
    from .tflite import calibrate_tflite

    options = dict(options or {})
    if fmt_name not in ("tflite_int8", "onnx_int8"):
        raise UserError(f"quant-report takes tflite_int8 or onnx_int8; received {fmt_name!r}.")
    if images <= 0:
        raise UserError(f"--eval-images must be positive; received {images}.")
    graph = export_graph(model, info)
    subset = calibration.images[:images]
    if fmt_name == "tflite_int8":
        return tflite_report(calibrate_tflite(graph, calibration), subset, fmt_name,
                             per_channel=options.get("per_channel") is not False)
    meta = make_metadata(info, spec, graph.input_shape[1:3], FORMATS[fmt_name], "logits")
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-qreport-") as tmp:
        fp32 = export_onnx(graph, Path(tmp) / "fp32.onnx", metadata=meta)
        settings = onnx_int8_settings(options, choose_target(options.get("target")))
        int8 = _onnx_int8_writer(fp32, meta, calibration, settings)(Path(tmp) / "int8.onnx")
        return onnx_report(preprocess_for_quantization(fp32, Path(tmp) / "pre.onnx"), int8, subset, fmt_name)
