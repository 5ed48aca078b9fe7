"""What an export wrote: one `ExportedFile` per file and the `ExportReport` with the manifest's path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .formats import FORMATS
from .keep_float import Fallback
from .verify import Verification


@dataclass(frozen=True)
class ExportedFile:
    format: str
    path: Path
    size_bytes: int
    sha256: str
    seconds: float
    verification: Verification
    ops: dict
    fallback: Fallback | None = None  # layers kept in float (`keep_float`, `auto_keep_float`)
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
            if fb.speed is not None:
                sp = fb.speed
                lines.append(f"  for speed: {len(sp.kept)} of {len(sp.candidates)} layer(s) slower in int8 kept "
                             f"in float; measured gain {sp.gain:.2f}x (paired timing)")
            lines += [f"  {layer}" for layer in fb.kept]
        lines.append(f"\nKeras mIoU on the same {self.verify_images} images: {100 * self.model['keras_miou']:.1f}%; "
                     f"manifest: {self.manifest}")
        return "\n".join(lines)
