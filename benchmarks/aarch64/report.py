"""The check's record: <date>-aarch64.md and .json (through the bench library's `write_record`), the
Markdown being the agreement per file and CPU, the emulated CPUs, the bench runs and the install size."""

from __future__ import annotations

from pathlib import Path

from ..report import write_record
from .cpus import SHOWN_FEATURES

__all__ = ["markdown_lines", "to_markdown", "write_report"]


def _pct(v) -> str:
    return "failed" if v is None else f"{100 * v:.2f}%"


def _intro(r: dict) -> list[str]:
    guest = next(iter(r["guest"].values()), {})
    return [f"# The TF-free runtime on aarch64 under qemu-user ({r['date']})", "",
            f"Host: {r['host']['cpu_model']} ({r['host']['machine']}), {r['qemu']}. Guest: Debian 12 arm64 "
            f"Python {guest.get('python', '?')} ({guest.get('libc', '?')}) under `qemu-aarch64-static -L ROOT` "
            "(user-mode emulation, no binfmt, no chroot), the core install (`pip install deeplab-edge`, no "
            "extras) from aarch64 manylinux wheels. Produced by `python -m deeplab_edge.benchmarks.aarch64` "
            "(raw numbers in the .json beside this file).", "",
            f"Model files: {r['models']} (preset {r['model'].get('preset')}, input "
            f"{r['model'].get('input_size')}, {r['model'].get('num_classes')} classes). Photos: "
            + ", ".join(f"{n} {w}x{h}" for n, (w, h) in r["photo_sizes"].items())
            + f". `deeplab-edge predict --no-overlay --threads {r['threads']}` on x86 (reference) and under "
            "each emulated CPU, same wheel of the working tree.", "",
            "Agreement: the fraction of mask pixels equal to the x86 mask of the same file and photo; min over "
            "the photos / pixel-weighted over all photos. Time: wall seconds of one emulated `predict` call "
            f"on the {len(r['photos'])} photos, interpreter start-up and imports included (emulated: proves "
            "behaviour, not speed). Needed: 100% (min) for float files (fp32, fp16, dynamic), 99% for int8."
            + (f" Not asserted (reported only): `{'`, `'.join(r['not_asserted'])}`." if r["not_asserted"] else ""),
            ""]


def _agreement(r: dict) -> list[str]:
    cpus = r["cpus"]
    lines = ["| format | " + " | ".join(f"{c} min / weighted | {c} s" for c in cpus) + " |",
             "|---|" + "---|---|" * len(cpus)]
    for fmt in dict.fromkeys(row["format"] for row in r["results"]):
        cells = []
        for c in cpus:
            row = next((x for x in r["results"] if x["cpu"] == c and x["format"] == fmt), None)
            if row is None:
                cells += ["", ""]
            elif row.get("error"):
                cells += [f"failed: {row['error'][:80]}", f"{row['emulated_wall_s']:.0f}"]
            else:
                mark = "" if row["passed"] or not row["asserted"] else " **FAIL**"
                cells += [f"{_pct(row['min'])} / {_pct(row['pixel_weighted'])}{mark}",
                          f"{row['emulated_wall_s']:.0f}"]
        lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
    return lines


def _cpus(r: dict) -> list[str]:
    lines = ["", "Emulated CPUs: MIDR_EL1 read in the guest and the features qemu gives the CPU (AT_HWCAP), "
             "written into the emulated /proc/cpuinfo; then what the project's `benchmarks/sysinfo.py` "
             "(`machine_info()`) read back inside the guest:", "",
             "| QEMU_CPU | MIDR | features of interest | sysinfo: CPU, ISA | sysinfo: int8 line |",
             "|---|---|---|---|---|"]
    for c in r["cpus"]:
        g = r["guest"].get(c) or {}
        feats = [f for f in SHOWN_FEATURES if f in g.get("features", [])]
        m = g.get("sysinfo") or {}
        midr = f"0x{g['midr']:08x}" if isinstance(g.get("midr"), int) else "-"
        lines.append(f"| {c} | {midr} | {' '.join(feats) or '-'} | "
                     + (f"error: {m['error'][:80]} | |" if m.get("error") else
                        f"{m.get('cpu_model') or '-'}, {m.get('isa_summary') or '-'} | {m.get('int8_isa') or '-'} |"))
    return lines


def _bench(r: dict) -> list[str]:
    if not r["bench"]:
        return []
    lines = ["", f"`deeplab-edge bench {r['bench_file']} --threads 2 --warmup 1 --min-runs 3 --min-time 0.1 "
             "--eval-images 4 --device cpu --out DIR` per CPU, core install only (no matplotlib, psutil, "
             "imgviz), with an empty deeplab-edge cache (a fresh board) and with this host's cache (the "
             "built-in demo set already made); latency emulated:", "",
             "| QEMU_CPU | cache | exit code | rows | emulated median latency | wall s | last line |",
             "|---|---|---|---|---|---|---|"]
    for c, runs in r["bench"].items():
        for b in runs:
            rows = ", ".join(f"{x['name']} {x['status']}" for x in b["rows"]) or "none"
            lat = ", ".join(f"{x['median_ms']:.0f} ms" for x in b["rows"] if x.get("median_ms")) or "-"
            lines.append(f"| {c} | {b['cache']} | {b['rc']} | {rows} | {lat} | {b['wall_s']:.0f} | "
                         f"{(b['last_line'] or '').replace('|', '/')[:160]} |")
    return lines


def _install(r: dict) -> list[str]:
    inst = r["install"]
    lines = ["", f"Core install size (wheels pip resolved for CPython {inst['python']}, manylinux <= "
             f"{inst['platforms'][-1].split('_', 1)[-1].replace('_', '.')}, constraints.txt pins): aarch64 "
             f"{inst['aarch64_mb']} MB download / {inst['aarch64_unpacked_mb']} MB unpacked"
             + (f"; x86_64 {inst['x86_64_mb']} MB / {inst['x86_64_unpacked_mb']} MB." if inst["x86_64_mb"] else "."),
             "", "| package | version | aarch64 MB | x86_64 MB | aarch64 wheel |", "|---|---|---|---|---|"]
    x86 = {x["package"]: x for x in inst["x86_64"]}
    for a in inst["aarch64"]:
        b = x86.get(a["package"])
        x86_mb = f"{b['mb']:.2f}" if b else "-"
        lines.append(f"| {a['package']} | {a['version']} | {a['mb']:.2f} | {x86_mb} | {a['wheel']} |")
    for b in inst["x86_64"]:
        if b["package"] not in {a["package"] for a in inst["aarch64"]}:
            lines.append(f"| {b['package']} | {b['version']} | - | {b['mb']:.2f} | (x86_64 only) |")
    return lines


def _closing(r: dict) -> list[str]:
    lines = []
    ref = r.get("arm_reference_cpu")
    key = f"vs_{ref}"
    others = [x for x in r["results"] if key in x and x["asserted"]]
    if others:
        differ = sorted({f"{x['cpu']} {x['format']} ({_pct(x[key])})" for x in others if x[key] != 1.0})
        lines += ["", f"The asserted Arm CPUs among themselves (masks against {ref}'s): "
                  + ("identical for every file and photo." if not differ else "differ: " + ", ".join(differ) + ".")]
    inst = r["install"]
    if inst.get("aarch64_needs_glibc"):
        lines += ["", f"The aarch64 wheel set needs glibc >= {inst['aarch64_needs_glibc']} (set by "
                  f"{', '.join(inst['aarch64_glibc_set_by'])}); per wheel: "
                  + ", ".join(f"{a['package']} {a['glibc']}" for a in inst["aarch64"] if a.get("glibc")) + "."]
    if r.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in r["notes"]]]
    return lines + ["", "Result: " + ("passed." if r["passed"] else "FAILED: " + "; ".join(r["failures"]))]


def markdown_lines(r: dict) -> list[str]:
    """The record of `run_check`'s result `r` as Markdown lines."""
    return _intro(r) + _agreement(r) + _cpus(r) + _bench(r) + _install(r) + _closing(r)


def to_markdown(r: dict) -> str:
    """The record of `run_check`'s result `r` as Markdown text."""
    return "\n".join(markdown_lines(r)) + "\n"


def write_report(r: dict, out: Path) -> tuple[Path, Path]:
    """<date>-aarch64.json and .md in `out` (made if missing; atomic writes); prints the Markdown."""
    stem = Path(out) / f"{r['date']}-aarch64"
    write_record(stem, r, markdown_lines(r))
    return stem.with_suffix(".md"), stem.with_suffix(".json")
