"""`deeplab-edge bench`."""

from __future__ import annotations

import argparse

from ._common import add_data_arg, add_load_args, add_model_flags, add_out_arg, model_flags, renamed

DEVICE_OF_GPU = {"auto": "auto", "off": "cpu"}  # the old --gpu values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help=".tflite / .onnx files, or an export manifest.json")
    p.add_argument("--keras", metavar="CHECKPOINT", help="the Keras float model as the baseline row (needs the "
                   "train extra; default: the checkpoint named in the manifest, if any)")
    add_data_arg(p, required_hint=" (its validation split is the evaluation set)")
    p.add_argument("--eval-images", type=int, default=100, help="validation images for mIoU")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every row (default: the CPUs "
                   "this process may use, the same for LiteRT, onnxruntime and Keras)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per row before timing")
    p.add_argument("--min-runs", type=int, default=30, help="minimum timed runs per row")
    p.add_argument("--min-time", type=float, default=3.0, help="minimum seconds of timed runs per row")
    device = p.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto",
        help="auto: CPU rows, plus GPU rows for the float files where a GPU path exists (LiteRT's GPU accelerator "
             "on a Vulkan device, a software one marked emulated; onnxruntime's GPU providers; TensorFlow's GPU), "
             "listed as skipped with the reason otherwise; cpu: CPU rows only; gpu: as auto, but a float file with "
             "no GPU path is a failed row")
    renamed(p, "--gpu", device, convert=DEVICE_OF_GPU.get, choices=tuple(DEVICE_OF_GPU))
    add_out_arg(p, "bench", "folder for bench.json, bench.md and plots")
    p.add_argument("--budget", metavar="FILE", help="JSON limits; exit 1 naming each broken limit (default: none)")
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when a row failed (default: a failed "
                   "row exits 1)")
    g = p.add_argument_group("paired gate: candidate files against baseline files, timed together in this run")
    g.add_argument("--baseline", nargs="+", metavar="FILE", help="the baseline .tflite/.onnx files or export "
                   "manifest.json (rows pair by format name), or a bench.json stored by an earlier run (accuracy "
                   "gated; its latency only on the same machine fingerprint); FILES are the candidates. Exit 0 pass, "
                   "1 regression, 3 inconclusive (default: no gate)")
    g.add_argument("--max-slowdown", default="5%", metavar="PCT", help="the largest slowdown allowed, e.g. 5%%: a "
                   "regression only when the 95%% interval of candidate/baseline lies above 1 + PCT")
    g.add_argument("--max-miou-drop", type=float, default=None, metavar="PT", help="with --data: the largest mIoU "
                   "drop of the candidate against the baseline in points (default: not gated, reported)")
    g.add_argument("--max-class-iou-drop", type=float, default=None, metavar="PT", help="with a stored baseline "
                   "bench.json: the largest IoU drop of any class in points (default: not gated, reported)")
    g.add_argument("--max-time", type=float, default=60.0, metavar="S", help="seconds of paired rounds per pair "
                   "before an undecided interval is called inconclusive")
    g.add_argument("--junit", metavar="FILE", help="also write the verdicts as JUnit XML (a test case per pair "
                   "and limit) (default: none)")
    add_model_flags(p)
    add_load_args(p, output=False)
    p.add_argument("--resample", choices=("pillow", "opencv", "mediapipe"), default="pillow",
                   help="how file rows resize images (see predict --resample); the Keras row always uses Pillow")
    p.add_argument("--upsample", choices=("labels", "scores"), default="labels",
                   help="how file rows bring an output at a stride to the image (see predict --upsample)")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.benchmarks.bench import BenchSettings, bench_files, write_outputs
    from deeplab_edge.benchmarks.budget import check_budget, format_violations, load_budget
    from deeplab_edge.benchmarks.plots import plots_available
    from deeplab_edge.benchmarks.report import to_terminal
    from deeplab_edge.progress import steps
    from deeplab_edge.runtime.backends import default_threads

    if args.baseline:
        return _gate(args)
    budget = load_budget(args.budget) if args.budget else None  # refuse a bad budget before any work
    if budget is not None and "max_slowdown" in budget.limits:
        from deeplab_edge.errors import UserError

        raise UserError(f"{args.budget} sets max_slowdown, a limit relative to a baseline: add --baseline BASELINE... "
                        "(the files or manifest of what ships now).")
    settings = BenchSettings(threads=default_threads() if args.threads is None else args.threads,
                             warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time, device=args.device)
    report = bench_files(args.files, keras=args.keras, data=args.data, eval_images=args.eval_images,
                         settings=settings,
                         flags={**model_flags(args), "resample": args.resample, "upsample": args.upsample},
                         keras_load={"custom_objects": args.custom_objects, "unsafe": args.unsafe},
                         progress=steps("bench"))
    written = write_outputs(report, args.out)
    print()
    print(to_terminal(report))
    print(f"\nwrote {', '.join(map(str, written))}")
    if not plots_available():
        print("note: no plots: matplotlib is not installed (pip install 'deeplab-edge[runtime]')")
    failed = [r.name for r in report.rows if r.status == "failed"]
    if failed:
        print(f"{len(failed)} row(s) failed: {', '.join(failed)}" + (" (allowed by --allow-fail)" if args.allow_fail
                                                                      else ""))
    code = 1 if failed and not args.allow_fail else 0
    if budget is not None:
        violations = check_budget(report, budget)
        print(format_violations(violations))
        code = 1 if violations else code
    return code


def _gate(args: argparse.Namespace) -> int:
    from deeplab_edge.benchmarks.gate import gate_files, parse_slowdown
    from deeplab_edge.benchmarks.gate_report import to_markdown, write_outputs
    from deeplab_edge.benchmarks.gate_stored import gate_against_stored, stored_baseline
    from deeplab_edge.errors import UserError
    from deeplab_edge.progress import steps

    if not args.files:
        raise UserError("--baseline needs candidate files too: deeplab-edge bench CANDIDATE... --baseline BASELINE...")
    slowdown, miou_drop = parse_slowdown(args.max_slowdown), args.max_miou_drop
    if args.budget:  # its relative limits, per row, over the flags
        from deeplab_edge.benchmarks.budget import gate_limits, load_budget

        slowdown, miou_drop, ignored = gate_limits(load_budget(args.budget), slowdown, miou_drop)
        if ignored:
            print(f"note: the paired gate reads max_slowdown and max_miou_drop from {args.budget}; the absolute "
                  f"limits {', '.join(ignored)} apply to a plain bench and are not checked here")
    flags = {**model_flags(args), "resample": args.resample, "upsample": args.upsample}
    stored = stored_baseline(args.baseline)
    if stored is not None:  # a bench.json of an earlier run: the candidates are benched now, then compared
        gate = gate_against_stored(args.files, stored, data=args.data, eval_images=args.eval_images,
                                   threads=args.threads, warmup=args.warmup, min_runs=args.min_runs,
                                   min_time_s=args.min_time, flags=flags,
                                   max_slowdown=parse_slowdown(args.max_slowdown), max_miou_drop=args.max_miou_drop,
                                   max_class_iou_drop=args.max_class_iou_drop, progress=steps("gate"))
    else:
        gate = gate_files(args.files, args.baseline, max_slowdown=slowdown, max_miou_drop=miou_drop, data=args.data,
                          eval_images=args.eval_images, threads=args.threads, max_time_s=args.max_time,
                          progress=steps("gate"))
    written = write_outputs(gate, args.out, junit=args.junit)
    print()
    print(to_markdown(gate))
    print(f"wrote {', '.join(map(str, written))}")
    return gate.exit_code
