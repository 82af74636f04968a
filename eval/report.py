"""An evaluation run as a report: ``report.json``, ``report.md`` and one self-contained ``report.html``.

This module holds the JSON data, the Markdown and the writing of the three files; the HTML page is
:mod:`eval.report_html` (its charts :mod:`eval.charts`) and what both share :mod:`eval.report_common`.
The HTML file needs nothing else: CSS is inline, charts are SVG, there is no script
and a Content-Security-Policy forbids loading anything, so it opens offline, inside the
Streamlit app (``ui.reports_dir``) and on paper. Every piece of user text (questions, answers,
passages, file names, metric names) is escaped.

Sections (both Markdown and HTML): headline metrics; retrieval, answer, RAGAS, guard and other
metrics (mean, 95% CI, n, failed; a metric that failed on every answer reads "failed (k)", never
0) with the reasons of failures; score distributions (HTML); run-to-run comparison; history;
hallucinations (overall, by source document, by question type, worst cases with the flagged
sentences beside their evidence); probes; the run manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from eval.report_common import (
    MAX_CELL,
    PROBE_CASES,
    QTYPE_HEADER,
    QTYPE_KEYS,
    SOURCE_HEADER,
    SOURCE_KEYS,
    Comparison,
    case_columns,
    ci_cell,
    clean_json,
    flatten,
    fmt_num,
    fmt_p,
    fmt_text,
    history_metrics,
    manifest_rows,
    mean_cell,
    overall_rows,
    report_failures,
    report_groups,
    report_hallucination,
    report_headline,
    run_facts,
    runs_over_time,
    source_label,
)
from eval.report_html import render_html  # also importable from here, as before
from eval.types import MetricSummary, RunRecord

WORST_IN_MARKDOWN = 10


def report_data(
    run: RunRecord, *, comparison: Comparison | None = None, history: Sequence[RunRecord] | None = None
) -> dict[str, Any]:
    """What ``report.json`` holds: the run, its hallucination report, the comparison and history."""
    data = run.to_dict()
    data["hallucination"] = report_hallucination(run)
    data["comparison"] = list(comparison or [])
    if history:
        data["history"] = [
            {
                "id": r.id,
                "created_at": r.created_at,
                "dataset": r.dataset,
                "status": r.status,
                "summary": {k: v.to_dict() for k, v in r.summary.items()},
            }
            for r in runs_over_time(run, history)
        ]
    cleaned: dict[str, Any] = clean_json(data)
    return cleaned


# -- Markdown ---------------------------------------------------------------------------------------
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#~"})


def _md(text: Any, limit: int = MAX_CELL) -> str:
    """User text safe inside a Markdown table cell: one line, markup characters escaped."""
    return fmt_text(text, limit).replace("&", "&amp;").translate(_MD_SPECIAL)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _md_metrics(metrics: Sequence[MetricSummary]) -> list[str]:
    rows = [[_md(m.name), mean_cell(m), ci_cell(m), str(m.n), str(m.failed)] for m in metrics]
    return _md_table(["Metric", "Mean", "95% CI", "n", "Failed"], rows)


def _md_quote(text: str) -> list[str]:
    lines = text.splitlines() or [""]
    return ["> " + _md(line, 10_000) for line in lines]


def _md_comparison(comparison: Comparison) -> list[str]:
    rows = [
        [
            _md(c.get("metric", "")),
            fmt_num(c.get("a")) if c.get("a") is not None else "failed",
            fmt_num(c.get("b")) if c.get("b") is not None else "failed",
            fmt_num(c.get("diff")),
            f"[{fmt_num(c.get('ci_low'))}, {fmt_num(c.get('ci_high'))}]",
            fmt_p(c.get("p_value")),
            "**yes**" if c.get("significant") else "no",
        ]
        for c in comparison
    ]
    return _md_table(["Metric", "A", "B", "B − A", "95% CI", "p", "Significant"], rows)


def _breakdown_rows(table: dict[str, dict[str, Any]], keys: Sequence[str]) -> list[list[str]]:
    return [[_md(name)] + [fmt_num(row.get(k)) for k in keys] for name, row in table.items()]


def _md_case(i: int, case: dict[str, Any]) -> list[str]:
    qtype = f", {_md(case['qtype'])}" if case.get("qtype") else ""
    lines = [
        f"#### {i}. {_md(case['sample_id'])} (replicate {case['replicate']}{qtype}) — grounding "
        f"{fmt_num(case.get('grounding'))}, {case.get('flagged_count', 0)} flagged",
        "",
        f"**Question:** {_md(case.get('question', ''), 2000)}",
        "",
        *_md_quote(str(case.get("answer", ""))),
        "",
    ]
    if case.get("reference_answers"):
        lines += [f"**Reference:** {_md(' / '.join(case['reference_answers']), 1000)}", ""]
    for flag in case.get("flagged", []):
        evidence = ", ".join(source_label(ref) for ref in flag.get("evidence_sources", [])) or "no passage"
        lines += [
            f"- ⚠️ **{_md(flag.get('text', ''), 2000)}** (support {fmt_num(flag.get('score'))}"
            f"{', ' + _md(flag['reason']) if flag.get('reason') else ''})",
            f"  - evidence ({_md(evidence)}): "
            f"{_md(flag.get('evidence_text', '') or '(no evidence text)', 1000)}",
        ]
    cited = ", ".join(source_label(ref) for ref in case.get("citations", []))
    if cited:
        lines += [f"- cited: {_md(cited)}"]
    return [*lines, ""]


def _md_probe(name: str, probe: Any) -> list[str]:
    lines = [f"### {_md(name)}", ""]
    if not isinstance(probe, dict):
        return [*lines, _md(probe), ""]
    summary = probe.get("summary", {})
    if isinstance(summary, dict) and summary:
        lines += _md_table(["", "Value"], [[_md(k), _md(v)] for k, v in flatten(summary).items()])
    cases = probe.get("cases", [])
    if isinstance(cases, list) and cases:
        columns = case_columns(cases[:PROBE_CASES])
        rows = [
            [_md(c.get(k, "") if isinstance(c, dict) else c, 160) for k in columns]
            for c in cases[:PROBE_CASES]
        ]
        lines += [f"First {min(len(cases), PROBE_CASES)} of {len(cases)} cases:", ""]
        lines += _md_table([_md(c) for c in columns], rows)
    return lines


def render_markdown(
    run: RunRecord, *, comparison: Comparison | None = None, history: Sequence[RunRecord] | None = None
) -> str:
    """The report as Markdown (GitHub / Streamlit flavour); user text is escaped."""
    hall = report_hallucination(run)
    lines = [f"# Evaluation report: {_md(run.dataset)}", ""]
    lines += _md_table(["", ""], [[k, _md(v)] for k, v in run_facts(run)])
    if run.status != "complete":
        lines += [
            f"> **Run {_md(run.status)}**: the figures cover the answers finished before it stopped.",
            "",
        ]

    lines += ["## Headline metrics", ""]
    lines += _md_metrics(report_headline(run.summary)) if run.summary else ["No metrics.", ""]
    for title, metrics in report_groups(run.summary).items():
        lines += [f"## {title}", "", *_md_metrics(metrics)]
    failures = report_failures(run)
    if failures:
        lines += ["### Metric failures", ""]
        lines += _md_table(
            ["Metric", "Failed", "Most common reason"], [[_md(n), str(k), _md(r)] for n, k, r in failures]
        )

    if comparison:
        lines += ["## Comparison with the baseline run", "", *_md_comparison(comparison)]

    runs = runs_over_time(run, history) if history else []
    if runs:
        names = history_metrics(run, runs) or [m.name for m in report_headline(run.summary)]
        rows = [
            [_md(r.id), _md(r.created_at)]
            + [mean_cell(r.summary[n]) if n in r.summary else "—" for n in names]
            for r in runs
        ]
        lines += ["## History", "", *_md_table(["Run", "Created", *(_md(n) for n in names)], rows)]

    lines += ["## Hallucinations", ""]
    lines += _md_table(["", ""], overall_rows(hall.get("overall", {})))
    if hall.get("by_source"):
        lines += ["### By source document", ""]
        lines += _md_table(SOURCE_HEADER, _breakdown_rows(hall["by_source"], SOURCE_KEYS))
    if hall.get("by_qtype"):
        lines += ["### By question type", ""]
        lines += _md_table(QTYPE_HEADER, _breakdown_rows(hall["by_qtype"], QTYPE_KEYS))
    worst = hall.get("worst", [])[:WORST_IN_MARKDOWN]
    if worst:
        lines += ["### Worst answers", ""]
        for i, case in enumerate(worst, 1):
            lines += _md_case(i, case)

    if run.probes:
        lines += ["## Probes", ""]
        for name, probe in run.probes.items():
            lines += _md_probe(name, probe)

    lines += ["## Run manifest", ""]
    lines += _md_table(["Key", "Value"], [[_md(k), _md(v)] for k, v in manifest_rows(run.manifest)])
    return "\n".join(lines).rstrip() + "\n"


# -- files ------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    """Write through a temporary file so a reader (the app) never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(
    run: RunRecord,
    out_dir: Path,
    *,
    comparison: Comparison | None = None,
    history: list[RunRecord] | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``; their paths by format."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    data = report_data(run, comparison=comparison, history=history)
    _write(paths["json"], json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    _write(paths["md"], render_markdown(run, comparison=comparison, history=history))
    _write(paths["html"], render_html(run, comparison=comparison, history=history))
    return paths
