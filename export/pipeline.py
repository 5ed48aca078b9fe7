"""Export a model to every chosen format, each file verified against Keras, plus manifest.json.

`export_checkpoint` (a checkpoint path in) is what `deeplab-edge export` and the demo call; `export_all`
takes a loaded model and its images. Each format's file is written by its writer (`formats.FORMATS`).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from deeplab_edge import __version__
from deeplab_edge.classes import classes_of
from deeplab_edge.errors import UserError
from deeplab_edge.fileio import sha256, write_bytes_atomic
from deeplab_edge.runtime.kernels import normalise

from .calibration import Calibration, calibration_and_verification
from .formats import FORMATS, ExportFormat, resolve_formats
from .graph import LOGITS_AT, export_graph, make_metadata, pixel_plan
from .options import ExportOptions
from .report import ExportedFile, ExportReport
from .spec import ModelSpec, model_spec
from .targets import choose_target, same_kernels
from .verify import Reference, Thresholds, keras_reference, verify_file
from .writers import FileJob, Workspace

__all__ = ["ExportReport", "ExportedFile", "export_all", "export_checkpoint", "load_for_export"]


def export_all(model, info, out_dir: str | Path, *, name: str = "model", formats: list[str] | None = None,
               options: ExportOptions | None = None, calibration: Calibration | None = None,
               verify_images: np.ndarray | None = None, verify_masks: np.ndarray | None = None,
               thresholds: Thresholds | None = None, force: bool = False, head: str = "logits",
               input_size: tuple[int, int] | None = None, num_threads: int | None = None,
               progress=print, checkpoint: str | Path | None = None, spec: ModelSpec | None = None,
               pixel_input: bool = True, logits_at: str = "input", note=None) -> ExportReport:
    """Export `model` (from `load_checkpoint`) to each format, verify each file, and write manifest.json.

    `spec` (classes, normalisation, output kind) defaults to what the checkpoint's model info says.
    `verify_images` are uint8 pixels at the model's input size, with their `verify_masks`; `calibration`
    (`Calibration`) is needed by int8 formats. `pixel_input` (default): TFLite files take raw uint8 RGB
    pixels and normalise them themselves (see `graph.pixel_plan`; ONNX and 16x8 files keep normalised
    float32 inputs); False: every file takes normalised float32 as the Keras model does. `logits_at`
    "stride": the files output logits at the decoder's stride (input / 4) and leave the upsampling to
    the runtime; "input" (default): logits upsampled bilinearly to the input size inside the file.
    `note` (default: `progress`) takes the lines a user must see even when steps are hidden."""
    note = progress if note is None else note
    thresholds = thresholds or Thresholds()
    chosen, options = _check_request(info, formats, options or ExportOptions(), head, logits_at, checkpoint)
    target = choose_target(options.target) if any(f.precision == "int8" for f in chosen) else None
    if target is not None and target.note:
        note(f"note: {target.note}")
    on_target, host_kernels = same_kernels(target.target) if target is not None else (True, "")
    out_dir = Path(out_dir)
    paths = planned_paths(out_dir, name, chosen)
    check_free(out_dir, name, chosen, force)
    if any(f.needs_calibration for f in chosen) and calibration is None:
        raise UserError("Int8 formats need calibration images: pass `data` (a folder with training images).")
    if verify_images is None or verify_masks is None or len(verify_images) == 0:
        raise UserError("Verification needs held-out images with masks: pass `data` with a validation split.")
    spec = spec or model_spec(model, info, None, checkpoint=checkpoint)
    if head == "labels" and spec.channels == 1:
        raise UserError("`head` labels puts an argmax inside the model, which a one-channel (foreground score) "
                        "output does not have; export it with the default `head` logits.")
    out_dir.mkdir(parents=True, exist_ok=True)

    from deeplab_edge.model.layers import at_decoder_stride, with_label_head

    full_graph = export_graph(model, info, input_size=input_size)
    logits_graph = at_decoder_stride(full_graph) if logits_at == "stride" else full_graph
    graph = with_label_head(logits_graph) if head == "labels" else logits_graph
    progress(f"computing Keras reference outputs on {len(verify_images)} held-out images")
    ref = keras_reference(logits_graph, verify_images, verify_masks, spec)
    fold_diff = _check_rebuild(model, full_graph, info, input_size, ref)
    results: list[ExportedFile] = []
    with tempfile.TemporaryDirectory(prefix="deeplab-edge-export-") as tmpdir:
        workspace = Workspace(Path(tmpdir))
        for fmt in chosen:
            job = _file_job(fmt, paths[fmt.name], graph, info, spec, head, pixel_input, calibration, options, target,
                            ref, thresholds, workspace, progress, num_threads)
            progress(f"exporting {fmt.name} -> {job.path.name}")
            t0 = time.perf_counter()
            written = fmt.writer(job)
            seconds = time.perf_counter() - t0
            results.append(_verified(fmt, job, written, seconds, on_target, host_kernels, note))
    if options.verify_on_target and target is not None:
        from .on_target import verify_on_target

        results = verify_on_target(results, target, ref, thresholds, progress, note)
    model_info = _model_info(model, info, graph, logits_graph, spec, ref, results, checkpoint=checkpoint, head=head,
                             pixel_input=pixel_input, logits_at=logits_at, fold_diff=fold_diff)
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deeplab_edge_version": __version__,
        "model": model_info,
        "calibration": {"source": calibration.source, "images": len(calibration)} if calibration else None,
        "verification": {"images": len(ref.pixels), "thresholds": thresholds.to_dict()},
        "files": [r.to_dict() for r in results],
    }
    manifest_path = out_dir / "manifest.json"
    write_bytes_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
    return ExportReport(out_dir, tuple(results), manifest_path, model_info, len(ref.pixels))


def _check_request(info, formats, options: ExportOptions, head: str, logits_at: str, checkpoint):
    """(the formats to write, the options as they apply): everything refused before any conversion."""
    if head not in ("logits", "labels"):
        raise UserError(f"`head` must be 'logits' or 'labels'; received {head!r}.")
    if logits_at not in LOGITS_AT:
        raise UserError(f"`logits_at` must be one of {', '.join(LOGITS_AT)}; received {logits_at!r}.")
    if logits_at == "stride" and info is not None and info.extra.get("qat"):
        raise UserError("`logits_at` stride is not available for a quantisation-aware checkpoint; drop it.")
    if logits_at == "stride" and info is None:
        raise UserError("`logits_at` stride cuts a deeplab-edge DeepLabV3+ graph before its final upsampling; "
                        f"{checkpoint or 'this model'} was not trained by deeplab-edge. Drop `logits_at`.")
    chosen = formats_for(info, formats)
    options.check(chosen)
    qat = (info.extra.get("qat") or {}) if info is not None else {}
    if qat.get("per_tensor"):  # the file quantises as the fine-tuning did
        if options.per_channel:
            raise UserError("This checkpoint was fine-tuned with per-tensor weights (`qat_per_tensor`); drop "
                            "`per_channel`.")
        options = options.replace(per_channel=False)
    return chosen, options


def _check_rebuild(model, full_graph, info, input_size, ref: Reference) -> float | None:
    """The rebuilt (folded, native-dilation) graph must compute what the checkpoint computes; returns the
    largest difference on four held-out images (None when the export graph is not a rebuild)."""
    if info is None or input_size not in (None, tuple(info.config.input_size)):
        return None
    x = normalise(ref.pixels[:4], ref.spec.mean, ref.spec.std)
    rebuilt = full_graph.predict(x, verbose=0)
    fold_diff = float(np.abs(rebuilt - model.predict(x, verbose=0)).max())
    scale = max(1.0, float(np.abs(rebuilt).max()))
    if fold_diff > 1e-4 * scale:
        raise UserError(f"The rebuilt export graph (folded, native dilation) differs from the checkpoint by "
                        f"{fold_diff:.2e} (logit scale {scale:.1f}); this is a bug: please report it, and "
                        "export meanwhile with the checkpoint as it is.")
    return fold_diff


def _file_job(fmt: ExportFormat, path: Path, graph, info, spec: ModelSpec, head: str, pixel_input: bool,
              calibration: Calibration | None, options: ExportOptions, target, ref: Reference,
              thresholds: Thresholds, workspace: Workspace, progress, num_threads) -> FileJob:
    """One file's writer input: its graph (with the normalising first op where it takes pixels that way),
    metadata and calibration images as the file will take them."""
    from deeplab_edge.model.layers import with_pixel_input

    how = pixel_plan(fmt, spec, pixel_input)
    meta = make_metadata(info, spec, tuple(graph.input_shape[1:3]), fmt, head, normalisation=how.normalisation)
    file_graph, file_calibration = graph, calibration
    if how.first_op:  # the full-integer converter quantises a float 0..255 input to uint8 itself
        file_graph = with_pixel_input(graph, spec.mean, spec.std,
                                      dtype="float32" if fmt.precision == "int8" else "uint8")
        if calibration is not None and fmt.needs_calibration:  # on the pixels the file will take
            file_calibration = calibration.for_pixel_input()
    return FileJob(fmt, path, file_graph, meta, file_calibration, how.input_quantization, options, target, ref,
                   thresholds, workspace, progress, num_threads)


def _verified(fmt: ExportFormat, job: FileJob, written, seconds: float, on_target: bool, host_kernels: str,
              note) -> ExportedFile:
    """The written file verified against Keras, with its ops and (int8) whose kernels verified it."""
    from .onnx import onnx_op_histogram
    from .tflite import op_histogram

    path = job.path
    job.progress(f"verifying {fmt.name} on {len(job.ref.pixels)} images")
    ver = verify_file(path, job.ref, fmt.precision, job.thresholds, num_threads=job.num_threads)
    ops = op_histogram(path) if fmt.backend == "tflite" else onnx_op_histogram(path)
    quant = None
    if written.settings is not None:
        kernels = f"{'onnxruntime' if fmt.backend == 'onnx' else 'LiteRT XNNPACK'} {host_kernels}"
        if not on_target:
            target = job.target.target.name
            note(f"note: {fmt.name} is made for {target}; its verification ran on {kernels}, not the target's"
                 + (" (`verify_on_target` runs it again with the Arm kernels under qemu)"
                    if target == "arm64" and not job.options.verify_on_target else ""))
        quant = {**written.meta.quantization, "verified_with": kernels, "on_target_kernels": on_target}
    return ExportedFile(fmt.name, path, path.stat().st_size, sha256(path), seconds, ver, ops, written.fallback, quant)


def _model_info(model, info, graph, logits_graph, spec: ModelSpec, ref: Reference, results, *, checkpoint, head,
                pixel_input, logits_at, fold_diff) -> dict:
    """The manifest's "model" entry: where it came from, its contract, its cost and Keras's mIoU."""
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.foreign import source_of

    cost = model_cost(logits_graph)
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
    return {"checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
            "source": source.to_dict() if source is not None else {"kind": "deeplab-edge" if info else "tf-keras"},
            "preset": info.preset if info else "", "config": info.config.to_dict() if info else {},
            "input_size": list(graph.input_shape[1:3]), "head": head, "class_names": list(spec.class_names),
            "pixel_input": pixel_input, "logits_at": logits_at, "output_size": list(graph.output_shape[1:3]),
            "mean": list(spec.mean), "std": list(spec.std), "output": spec.output, "notes": list(spec.notes),
            "params": cost.params, "macs": cost.macs, "macs_by_type": cost.macs_by_type, "macs_from": macs_from,
            "keras_miou": ref.miou, "rebuild_max_abs_diff": fold_diff}


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


def planned_paths(out_dir: Path, name: str, formats: list[ExportFormat]) -> dict[str, Path]:
    return {f.name: Path(out_dir) / f"{name}{f.suffix}" for f in formats}


def check_free(out_dir: Path, name: str, formats: list[ExportFormat], force: bool) -> None:
    """Refuse to overwrite existing outputs (including manifest.json) unless `force`."""
    if force:
        return
    targets = [*planned_paths(Path(out_dir), name, formats).values(), Path(out_dir) / "manifest.json"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UserError(f"{', '.join(existing)} already exist(s); pass `force` to overwrite.")


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
    if classes_of(channels) != ds.num_classes:
        what = "a one-channel foreground score (2 classes)" if channels == 1 else f"{channels} classes"
        raise UserError(f"The model predicts {what} but {ds.root} has {ds.num_classes}: pass `data` with the "
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
                      progress=print, note=None, options: ExportOptions | None = None,
                      **format_options) -> ExportReport:
    """`deeplab-edge export` from Python: load `checkpoint` (ours, or any Keras 2/3 .keras/.h5 file or
    SavedModel folder), export each of `formats` (default: all but tflite_int16x8) to `out_dir`, verify each
    file against Keras on `eval_images` held-out images of `data` (default: the dataset it was trained on,
    else the built-in demo set), and write manifest.json. Returns the `ExportReport` (`.passed`, `.table()`).

    `options` (an `ExportOptions`), or the same fields as keywords (`format_options`: calibration_count,
    io_type, opset, per_channel, ...; see `options.OPTION_HELP`), say what the int8 and ONNX writers do; one
    that no chosen format accepts is refused before any work. `class_names`,
    `input_scale`, `mean`, `std`: how a model not trained by deeplab-edge was trained. `load`: a
    `model.foreign.LoadOptions`. Steps go to `progress` and notes (what was assumed or should be known)
    to `note`, callables taking one line; `note` defaults to `progress`."""
    note = progress if note is None else note
    if options is not None and format_options:
        raise UserError(f"Pass `options` or keyword options ({', '.join(format_options)}), not both.")
    options = options or ExportOptions.from_mapping(format_options)
    options.check(resolve_formats(formats))  # before any heavy work
    if input_size is not None and min(input_size) <= 0:
        raise UserError(f"`input_size` must be positive; received {tuple(input_size)}.")
    if eval_images <= 0:
        raise UserError(f"`eval_images` must be positive; received {eval_images}.")
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
                        "has no deeplab-edge model info to rebuild it from; drop `input_size`.")
    out_dir = Path(out_dir)
    check_free(out_dir, name, chosen, force)
    spec = model_spec(model, info, ds, checkpoint=checkpoint, class_names=class_names, mean=mean, std=std,
                      input_scale=input_scale)
    for line in spec.notes:
        note(f"note: {line}")
    if any(f.name == "tflite_int8" for f in chosen) and options.io_type in ("int8", "uint8"):
        note(f"note: tflite_int8 takes {options.io_type} input: MediaPipe Tasks' ImageSegmenter "
             "accepts only float32/uint8 inputs and float outputs; for a MediaPipe app leave `io_type` at float32")
    size = tuple(input_size) if input_size else tuple(model.input_shape[1:3])
    if None in size:
        raise UserError(f"{checkpoint} takes inputs of any size {model.input_shape}; pass input_size "
                        "(`input_size` H W).")
    calibration, vx, vy = calibration_and_verification(
        ds, size, chosen, options.calibration_count, eval_images, spec.mean, spec.std,
        note=note, calibration_data=calibration_data)
    return export_all(model, info, out_dir, name=name, formats=[f.name for f in chosen], options=options,
                      calibration=calibration, verify_images=vx, verify_masks=vy, thresholds=thresholds,
                      force=force, head=head, input_size=tuple(input_size) if input_size else None,
                      num_threads=num_threads, progress=progress, checkpoint=checkpoint, spec=spec,
                      pixel_input=pixel_input, logits_at=logits_at, note=note)
