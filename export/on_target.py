"""Int8 files verified again on the target's own kernels (`verify_on_target`): arm64 under qemu."""

from __future__ import annotations

from dataclasses import replace

from deeplab_edge.errors import UserError

from .targets import ChosenTarget
from .verify import Reference, Thresholds, verify_outputs


def verify_on_target(results: list, target: ChosenTarget, ref: Reference, thresholds: Thresholds,
                     progress, note) -> list:
    """The int8 files verified again with the target's own kernels where this machine can run them: arm64
    under qemu (the aarch64 runtime: onnxruntime's and XNNPACK's Arm kernels). Recorded beside the host's
    verification as `quantization.target_verification`; a failure there fails the file."""
    todo = [r for r in results if r.quantization is not None and not r.quantization["on_target_kernels"]]
    if not todo:
        return results
    if target.target.name != "arm64":
        note(f"note: `verify_on_target`: this machine cannot run the {target.target.name} kernels (only "
             "arm64, under qemu); the files were verified with this machine's")
        return results
    from deeplab_edge.benchmarks.aarch64 import VERIFY_CPU as cpu
    from deeplab_edge.benchmarks.aarch64 import CheckError, SetupError, arm_labels

    progress(f"verifying {', '.join(r.format for r in todo)} with the Arm kernels: the aarch64 runtime under qemu "
             f"({cpu}; the first run builds it, minutes)")
    try:
        labels = arm_labels([r.path for r in todo], ref.pixels, cpu=cpu)
    except (SetupError, CheckError) as e:
        raise UserError(f"`verify_on_target` could not run the aarch64 runtime: {e}") from None
    out = []
    for r in results:
        if r in todo:
            ver = verify_outputs(None, labels[r.path], ref, "int8", thresholds)
            progress(f"{r.format} on Arm kernels (qemu {cpu}): {ver.figure} -> {'PASS' if ver.passed else 'FAIL'}")
            r = replace(r, quantization={**r.quantization, "target_verification": {
                **ver.to_dict(), "kernels": f"aarch64 runtime under qemu ({cpu}): the Arm kernels"}})
        out.append(r)
    return out
