"""The gate's outputs: a Markdown summary (a pull-request comment), JUnit XML, and gate.json."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .gate import GateReport


def to_markdown(report: GateReport) -> str:
    """A summary that fits a pull-request comment or a CI job summary."""
    icon = {"pass": "PASS", "regression": "REGRESSION", "inconclusive": "INCONCLUSIVE"}
    slow = "per row (budget file)" if report.max_slowdown is None else f"{100 * report.max_slowdown:g}%"
    lines = [f"### Latency gate: {icon[report.status]}", "",
             f"Limit: candidate at most {slow} slower than baseline"
             + (f"; mIoU drop at most {report.max_miou_drop:g} pt" if report.max_miou_drop is not None else "")
             + ". Paired ABBA rounds in one run; 95% bootstrap interval over rounds.", "",
             "| pair | candidate ms | baseline ms | ratio | 95% CI | rounds | baseline spread | mIoU cand / base | "
             "agreement | verdict |", "|---|---:|---:|---:|---|---:|---:|---|---:|---|"]
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    for p in report.pairs:
        e = p.latency
        miou = f"{100 * p.miou[0]:.1f} / {100 * p.miou[1]:.1f}" if p.miou else "–"
        agree = f"{100 * p.agreement:.2f}%" if p.agreement is not None else "–"
        stats = (f"{e.ratio:.3f} | {e.low:.3f}-{e.high:.3f} | {e.rounds} | +-{100 * e.baseline_spread:.1f}%" if e
                 else "– | – | – | –")
        lines.append(f"| {p.name} | {ms(p.candidate_p50_ms)} | {ms(p.baseline_p50_ms)} | {stats} | {miou} | {agree} | "
                     f"**{icon[p.status]}** |")
    lines += ["", *[f"- {p.name}: {p.verdict.reason}" + (f"; {p.miou_verdict.reason}" if p.miou_verdict else "")
                    for p in report.pairs]]
    if report.noise:
        lines.append(f"- machine: {', '.join(f'{k} {v}' for k, v in report.noise.items())}")
    return "\n".join(lines) + "\n"


def to_junit(report: GateReport) -> str:
    """JUnit XML: one test case per pair and limit; a regression is a failure, inconclusive is skipped."""
    cases = []
    for p in report.pairs:
        for limit, verdict in (("latency", p.verdict), ("miou", p.miou_verdict)):
            if verdict is None:
                continue
            body = ""
            if verdict.status == "regression":
                body = f"<failure message={quoteattr(verdict.reason)}>{escape(verdict.reason)}</failure>"
            elif verdict.status == "inconclusive":
                body = f"<skipped message={quoteattr(verdict.reason)}/>"
            cases.append(f'  <testcase classname="deeplab-edge.gate" name={quoteattr(f"{p.name} {limit}")} '
                         f'time="{p.seconds:.2f}">{body}</testcase>')
    failures = sum("<failure" in c for c in cases)
    skipped = sum("<skipped" in c for c in cases)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="deeplab-edge latency gate" '
            f'tests="{len(cases)}" failures="{failures}" skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def write_outputs(report: GateReport, out_dir: str | Path, *, junit: str | Path | None = None) -> list[Path]:
    import json

    from deeplab_edge.fileio import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "gate.json", out / "gate.md"]
    write_text_atomic(paths[0], json.dumps(report.to_dict(), indent=2) + "\n")
    write_text_atomic(paths[1], to_markdown(report))
    if junit is not None:
        write_text_atomic(Path(junit), to_junit(report))
        paths.append(Path(junit))
    return paths
