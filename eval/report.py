"""An evaluation run as a report: ``report.json``, ``report.md`` and one self-contained ``report.html``.

The HTML file needs nothing else: CSS is inline, charts are SVG drawn here, there is no script
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

import html
import json
import math
import numbers
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from eval.hallucination import hallucination_report
from eval.types import MetricSummary, RunRecord

GROUPS: tuple[tuple[str, str], ...] = (
    ("retrieval.", "Retrieval"),
    ("answer.", "Answer"),
    ("ragas.", "RAGAS"),
    ("guard.", "Guard"),
)
"""Metric name prefix -> section title; other metrics go to "Other metrics"."""
HEADLINE_PER_GROUP = 3
WORST_IN_MARKDOWN = 10
WORST_IN_HTML = 20
PROBE_CASES = 5
MAX_CELL = 300
MANIFEST_FIRST = ("corpus", "index", "model", "adapter", "seed", "version", "cost", "command")
"""Manifest keys containing these words come first, in this order."""

Comparison = list[dict[str, Any]]


# -- values -----------------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-ready: floats to 6 significant digits, NaN/inf to None, tuples to lists, others to str."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, numbers.Integral):  # numpy and other integer types
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return float(f"{number:.6g}") if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    return str(value)


def _num(value: Any) -> str:
    """A number for people: 3 decimals for scores, scientific for tiny, grouped for large."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return "—"
    if 0 < abs(value) < 0.001:
        return f"{value:.2e}"
    if abs(value) < 1000:
        return f"{value:.3f}"
    return f"{value:,.1f}"


def _text(value: Any, limit: int = MAX_CELL) -> str:
    """Any manifest/probe value as one line of text, cut at ``limit`` characters."""
    if isinstance(value, float | int | bool) or value is None:
        text = _num(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(_num(v) if isinstance(v, float) else str(v) for v in value)
    else:
        text = json.dumps(_clean(value), ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mean_cell(metric: MetricSummary) -> str:
    if metric.mean is None or not math.isfinite(metric.mean):
        return f"failed ({metric.failed})" if metric.failed else "—"
    return _num(metric.mean)


def _ci_cell(metric: MetricSummary) -> str:
    if metric.ci_low is None or metric.ci_high is None:
        return "—"
    return f"[{_num(metric.ci_low)}, {_num(metric.ci_high)}]"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b`` keys (lists and scalars are leaves)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data} if prefix else {}


def _manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest flattened, its key facts (corpus, models, seeds, versions, cost) first."""
    flat = _flatten(manifest)

    def rank(key: str) -> int:
        lowered = key.lower()
        return next((i for i, word in enumerate(MANIFEST_FIRST) if word in lowered), len(MANIFEST_FIRST))

    keys = sorted(flat, key=lambda k: (rank(k), list(flat).index(k)))
    return [(k, _text(flat[k])) for k in keys]


# -- what the report shows --------------------------------------------------------------------------
def _group_of(name: str) -> str:
    return next((title for prefix, title in GROUPS if name.startswith(prefix)), "Other metrics")


def _groups(summary: dict[str, MetricSummary]) -> dict[str, list[MetricSummary]]:
    """Metrics by section, in GROUPS order then "Other metrics", each in the run's order."""
    out: dict[str, list[MetricSummary]] = {title: [] for _, title in GROUPS}
    out["Other metrics"] = []
    for metric in summary.values():
        out[_group_of(metric.name)].append(metric)
    return {title: metrics for title, metrics in out.items() if metrics}


HEADLINE = (
    "retrieval.recall@5",
    "retrieval.mrr",
    "retrieval.ndcg@10",
    "answer.f1",
    "answer.em",
    "answer.semantic_similarity",
    "answer.abstained",
    "guard.grounding",
    "guard.flagged",
    "ragas.faithfulness",
    "ragas.faithfulness_llm",
    "ragas.answer_relevancy",
    "ragas.context_precision",
    "ragas.context_recall",
)
"""What a reader looks at first, in this order; a run without them shows the first few of each group."""


def _headline(summary: dict[str, MetricSummary]) -> list[MetricSummary]:
    preferred = [summary[name] for name in HEADLINE if name in summary]
    if len(preferred) >= HEADLINE_PER_GROUP:
        return preferred
    return [m for metrics in _groups(summary).values() for m in metrics[:HEADLINE_PER_GROUP]]


def _failures(run: RunRecord) -> list[tuple[str, int, str]]:
    """Metric -> how many answers it failed on and the most common reason."""
    reasons: dict[str, Counter[str]] = {}
    for result in run.results:
        for name, value in result.metrics.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                reason = result.errors.get(name, "no value")
                reasons.setdefault(name, Counter())[" ".join(reason.split())[:200]] += 1
    rows = [(name, sum(c.values()), c.most_common(1)[0][0]) for name, c in reasons.items()]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def _hallucination(run: RunRecord) -> dict[str, Any]:
    return run.hallucination or hallucination_report(run.results)


def _runs_over_time(run: RunRecord, history: Sequence[RunRecord] | None) -> list[RunRecord]:
    """The history with this run added (when missing), oldest first."""
    runs = list(history or [])
    if all(r.id != run.id for r in runs):
        runs.append(run)
    return sorted(runs, key=lambda r: r.created_at)


def _history_metrics(run: RunRecord, runs: Sequence[RunRecord], limit: int = 8) -> list[str]:
    """Headline metrics first, then the others, that have a mean in at least two runs."""
    names = [m.name for m in _headline(run.summary)] + list(run.summary)
    out: list[str] = []
    for name in names:
        seen = sum(1 for r in runs if name in r.summary and r.summary[name].mean is not None)
        if seen >= 2 and name not in out:
            out.append(name)
    return out[:limit]


def report_data(
    run: RunRecord, *, comparison: Comparison | None = None, history: Sequence[RunRecord] | None = None
) -> dict[str, Any]:
    """What ``report.json`` holds: the run, its hallucination report, the comparison and history."""
    data = run.to_dict()
    data["hallucination"] = _hallucination(run)
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
            for r in _runs_over_time(run, history)
        ]
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def _run_facts(run: RunRecord) -> list[tuple[str, str]]:
    samples = len({r.sample_id for r in run.results})
    replicates = len({r.replicate for r in run.results})
    return [
        ("Run", run.id),
        ("Created", run.created_at),
        ("Dataset", run.dataset),
        ("Status", run.status),
        ("Questions", str(samples)),
        ("Replicates", str(replicates)),
        ("Answers", str(len(run.results))),
        ("Wall time", f"{run.wall_seconds:.1f} s"),
    ]


# -- Markdown ---------------------------------------------------------------------------------------
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#~"})


def _md(text: Any, limit: int = MAX_CELL) -> str:
    """User text safe inside a Markdown table cell: one line, markup characters escaped."""
    return _text(text, limit).replace("&", "&amp;").translate(_MD_SPECIAL)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _md_metrics(metrics: Sequence[MetricSummary]) -> list[str]:
    rows = [[_md(m.name), _mean_cell(m), _ci_cell(m), str(m.n), str(m.failed)] for m in metrics]
    return _md_table(["Metric", "Mean", "95% CI", "n", "Failed"], rows)


def _md_quote(text: str) -> list[str]:
    lines = text.splitlines() or [""]
    return ["> " + _md(line, 10_000) for line in lines]


def _md_comparison(comparison: Comparison) -> list[str]:
    rows = [
        [
            _md(c.get("metric", "")),
            _num(c.get("a")) if c.get("a") is not None else "failed",
            _num(c.get("b")) if c.get("b") is not None else "failed",
            _num(c.get("diff")),
            f"[{_num(c.get('ci_low'))}, {_num(c.get('ci_high'))}]",
            _p(c.get("p_value")),
            "**yes**" if c.get("significant") else "no",
        ]
        for c in comparison
    ]
    return _md_table(["Metric", "A", "B", "B − A", "95% CI", "p", "Significant"], rows)


def _p(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _source_label(ref: dict[str, Any] | None) -> str:
    if not ref:
        return "—"
    page = f" p. {ref['page']}" if ref.get("page") is not None else ""
    return f"[{ref.get('number')}] {ref.get('source', '')}{page}"


def _overall_rows(overall: dict[str, Any]) -> list[tuple[str, str]]:
    labels = [
        ("answers", "Answers"),
        ("answered", "Answered (not abstained, no error)"),
        ("abstained", "Abstained"),
        ("errors", "App errors"),
        ("with_flagged", "Answers with ≥1 flagged sentence"),
        ("flagged_answer_share", "Share of answered with a flag"),
        ("sentences", "Sentences checked"),
        ("flagged_sentences", "Flagged sentences"),
        ("flagged_sentence_share", "Flagged sentence share"),
        ("mean_grounding", "Mean grounding"),
    ]
    return [(label, _num(overall.get(key))) for key, label in labels if key in overall]


def _breakdown_rows(table: dict[str, dict[str, Any]], keys: Sequence[str]) -> list[list[str]]:
    return [[_md(name)] + [_num(row.get(k)) for k in keys] for name, row in table.items()]


SOURCE_KEYS = ("answers", "with_flagged", "flagged_sentences", "mean_grounding")
SOURCE_HEADER = ("Source", "Answers", "With flags", "Flagged sentences", "Mean grounding")
QTYPE_KEYS = (
    "answers",
    "answered",
    "with_flagged",
    "flagged_sentences",
    "flagged_sentence_share",
    "mean_grounding",
)
QTYPE_HEADER = (
    "Question type",
    "Answers",
    "Answered",
    "With flags",
    "Flagged sentences",
    "Flagged share",
    "Mean grounding",
)


def _md_case(i: int, case: dict[str, Any]) -> list[str]:
    qtype = f", {_md(case['qtype'])}" if case.get("qtype") else ""
    lines = [
        f"#### {i}. {_md(case['sample_id'])} (replicate {case['replicate']}{qtype}) — grounding "
        f"{_num(case.get('grounding'))}, {case.get('flagged_count', 0)} flagged",
        "",
        f"**Question:** {_md(case.get('question', ''), 2000)}",
        "",
        *_md_quote(str(case.get("answer", ""))),
        "",
    ]
    if case.get("reference_answers"):
        lines += [f"**Reference:** {_md(' / '.join(case['reference_answers']), 1000)}", ""]
    for flag in case.get("flagged", []):
        evidence = ", ".join(_source_label(ref) for ref in flag.get("evidence_sources", [])) or "no passage"
        lines += [
            f"- ⚠️ **{_md(flag.get('text', ''), 2000)}** (support {_num(flag.get('score'))}"
            f"{', ' + _md(flag['reason']) if flag.get('reason') else ''})",
            f"  - evidence ({_md(evidence)}): "
            f"{_md(flag.get('evidence_text', '') or '(no evidence text)', 1000)}",
        ]
    cited = ", ".join(_source_label(ref) for ref in case.get("citations", []))
    if cited:
        lines += [f"- cited: {_md(cited)}"]
    return [*lines, ""]


def _md_probe(name: str, probe: Any) -> list[str]:
    lines = [f"### {_md(name)}", ""]
    if not isinstance(probe, dict):
        return [*lines, _md(probe), ""]
    summary = probe.get("summary", {})
    if isinstance(summary, dict) and summary:
        lines += _md_table(["", "Value"], [[_md(k), _md(v)] for k, v in _flatten(summary).items()])
    cases = probe.get("cases", [])
    if isinstance(cases, list) and cases:
        columns = _case_columns(cases[:PROBE_CASES])
        rows = [
            [_md(c.get(k, "") if isinstance(c, dict) else c, 160) for k in columns]
            for c in cases[:PROBE_CASES]
        ]
        lines += [f"First {min(len(cases), PROBE_CASES)} of {len(cases)} cases:", ""]
        lines += _md_table([_md(c) for c in columns], rows)
    return lines


def _case_columns(cases: Sequence[Any], limit: int = 8) -> list[str]:
    columns: list[str] = []
    for case in cases:
        for key in case if isinstance(case, dict) else ["value"]:
            if key not in columns:
                columns.append(str(key))
    return columns[:limit]


def render_markdown(
    run: RunRecord, *, comparison: Comparison | None = None, history: Sequence[RunRecord] | None = None
) -> str:
    """The report as Markdown (GitHub / Streamlit flavour); user text is escaped."""
    hall = _hallucination(run)
    lines = [f"# Evaluation report: {_md(run.dataset)}", ""]
    lines += _md_table(["", ""], [[k, _md(v)] for k, v in _run_facts(run)])
    if run.status != "complete":
        lines += [
            f"> **Run {_md(run.status)}**: the figures cover the answers finished before it stopped.",
            "",
        ]

    lines += ["## Headline metrics", ""]
    lines += _md_metrics(_headline(run.summary)) if run.summary else ["No metrics.", ""]
    for title, metrics in _groups(run.summary).items():
        lines += [f"## {title}", "", *_md_metrics(metrics)]
    failures = _failures(run)
    if failures:
        lines += ["### Metric failures", ""]
        lines += _md_table(
            ["Metric", "Failed", "Most common reason"], [[_md(n), str(k), _md(r)] for n, k, r in failures]
        )

    if comparison:
        lines += ["## Comparison with the baseline run", "", *_md_comparison(comparison)]

    runs = _runs_over_time(run, history) if history else []
    if runs:
        names = _history_metrics(run, runs) or [m.name for m in _headline(run.summary)]
        rows = [
            [_md(r.id), _md(r.created_at)]
            + [_mean_cell(r.summary[n]) if n in r.summary else "—" for n in names]
            for r in runs
        ]
        lines += ["## History", "", *_md_table(["Run", "Created", *(_md(n) for n in names)], rows)]

    lines += ["## Hallucinations", ""]
    lines += _md_table(["", ""], _overall_rows(hall.get("overall", {})))
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
    lines += _md_table(["Key", "Value"], [[_md(k), _md(v)] for k, v in _manifest_rows(run.manifest)])
    return "\n".join(lines).rstrip() + "\n"


# -- SVG charts -------------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_e(label)}" class="chart">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_score(*values: float | None) -> bool:
    return all(v is None or (math.isfinite(v) and -1e-9 <= v <= 1 + 1e-9) for v in values)


def svg_metric_bars(metrics: Sequence[MetricSummary], label: str = "Metric means with 95% CI") -> str:
    """Horizontal bars of scores in [0, 1] with CI whiskers; a failed metric reads "failed (k)"."""
    row, left, plot, top = 24, 210, 400, 24
    width, height = left + plot + 150, top + row * len(metrics) + 8
    x = lambda v: left + plot * min(max(v, 0.0), 1.0)  # noqa: E731
    body = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 6}" class="grid"/>'
        )
        body.append(
            f'<text x="{x(tick):.1f}" y="{top - 8}" text-anchor="middle" class="tick">{tick:g}</text>'
        )
    for i, m in enumerate(metrics):
        y = top + i * row
        mid = y + row / 2
        body.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" class="label">'
            f"{_e(_short(m.name, 30))}</text>"
        )
        tip = f"{m.name}: {_mean_cell(m)} CI {_ci_cell(m)} n={m.n} failed={m.failed}"
        if m.mean is None:
            body.append(
                f'<text x="{left + 4}" y="{mid + 4:.1f}" class="failed">{_e(_mean_cell(m))}<title>'
                f"{_e(tip)}</title></text>"
            )
            continue
        body.append(
            f'<rect x="{left}" y="{y + 5}" width="{x(m.mean) - left:.1f}" height="{row - 10}" '
            f'class="bar"><title>{_e(tip)}</title></rect>'
        )
        if m.ci_low is not None and m.ci_high is not None:
            lo, hi = x(m.ci_low), x(m.ci_high)
            body.append(f'<line x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}" class="whisker"/>')
            for end in (lo, hi):
                body.append(
                    f'<line x1="{end:.1f}" y1="{mid - 5:.1f}" x2="{end:.1f}" y2="{mid + 5:.1f}" '
                    'class="whisker"/>'
                )
        failed = f" ({m.failed} failed)" if m.failed else ""
        body.append(
            f'<text x="{left + plot + 8}" y="{mid + 4:.1f}" class="value">{_num(m.mean)}{failed}</text>'
        )
    return _svg(width, height, label, body)


def svg_histogram(values: Sequence[float], label: str, bins: int = 10) -> str:
    """A histogram of per-answer values (over [0, 1] for scores, else their range)."""
    width, height, left, bottom, top = 300, 170, 34, 26, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    if not values:
        return _svg(
            width,
            height,
            label,
            [f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="tick">no values</text>'],
        )
    lo, hi = (0.0, 1.0) if _is_score(*values) else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts)
    bar_w = plot_w / bins
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>']
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x0 = left + i * bar_w
        edges = f"{lo + (hi - lo) * i / bins:.3g}–{lo + (hi - lo) * (i + 1) / bins:.3g}"
        body.append(
            f'<rect x="{x0 + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" class="hbar"><title>{_e(edges)}: {count}</title></rect>'
        )
    for frac in (0.0, 0.5, 1.0):
        tx = left + plot_w * frac
        body.append(
            f'<text x="{tx:.1f}" y="{height - 8}" text-anchor="middle" class="tick">'
            f"{lo + (hi - lo) * frac:.3g}</text>"
        )
    body.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{peak}</text>')
    body.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>')
    return _svg(width, height, label, body)


def svg_comparison(comparison: Comparison) -> str:
    """Bars of each metric's difference (B − A) around zero with its CI; significant ones in colour."""
    row, left, plot, top = 24, 210, 420, 26
    width, height = left + plot + 120, top + row * len(comparison) + 8

    def val(c: dict[str, Any], key: str) -> float | None:
        v = c.get(key)
        return (
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None
        )

    span = max(
        [abs(v) for c in comparison for k in ("diff", "ci_low", "ci_high") if (v := val(c, k)) is not None]
        + [1e-9]
    )
    zero = left + plot / 2
    x = lambda v: zero + plot / 2 * v / span  # noqa: E731
    body = [
        f'<line x1="{zero:.1f}" y1="{top - 6}" x2="{zero:.1f}" y2="{height - 4}" class="axis"/>',
        f'<text x="{left:.1f}" y="{top - 10}" class="tick">{-span:.3g}</text>',
        f'<text x="{zero:.1f}" y="{top - 10}" text-anchor="middle" class="tick">0 (B − A)</text>',
        f'<text x="{left + plot:.1f}" y="{top - 10}" text-anchor="end" class="tick">+{span:.3g}</text>',
    ]
    for i, c in enumerate(comparison):
        y = top + i * row
        mid = y + row / 2
        significant = bool(c.get("significant"))
        star = " *" if significant else ""
        body.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" class="label">'
            f"{_e(_short(str(c.get('metric', '')), 30))}{star}</text>"
        )
        diff = val(c, "diff")
        if diff is None:
            body.append(
                f'<text x="{zero + 4:.1f}" y="{mid + 4:.1f}" class="failed">no difference (failed)</text>'
            )
            continue
        x0, x1 = sorted((zero, x(diff)))
        cls = "sig" if significant else "nosig"
        lo, hi = val(c, "ci_low"), val(c, "ci_high")
        tip = f"{c.get('metric')}: diff {_num(diff)} CI [{_num(lo)}, {_num(hi)}] p {_p(c.get('p_value'))}"
        body.append(
            f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 1):.1f}" height="{row - 10}" '
            f'class="{cls}"><title>{_e(tip)}</title></rect>'
        )
        if lo is not None and hi is not None:
            body.append(
                f'<line x1="{x(lo):.1f}" y1="{mid:.1f}" x2="{x(hi):.1f}" y2="{mid:.1f}" class="whisker"/>'
            )
            for end in (x(lo), x(hi)):
                body.append(
                    f'<line x1="{end:.1f}" y1="{mid - 5:.1f}" x2="{end:.1f}" y2="{mid + 5:.1f}" '
                    'class="whisker"/>'
                )
        body.append(f'<text x="{left + plot + 8}" y="{mid + 4:.1f}" class="value">{diff:+.3f}</text>')
    return _svg(width, height, "Run-to-run differences with 95% CI (* significant)", body)


def svg_history(name: str, runs: Sequence[RunRecord]) -> str:
    """One metric's mean over runs (oldest left) with its CI as a band."""
    width, height, left, bottom, top, right = 300, 150, 40, 24, 12, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(i, r.summary[name]) for i, r in enumerate(runs) if name in r.summary]
    means = [(i, m) for i, m in points if m.mean is not None]
    values = [v for _, m in means for v in (m.mean, m.ci_low, m.ci_high) if v is not None]
    if not values:
        return _svg(width, height, f"{name} over runs", [])
    lo, hi = (0.0, 1.0) if _is_score(*values) else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    xs = lambda i: left + (plot_w * i / (len(runs) - 1) if len(runs) > 1 else plot_w / 2)  # noqa: E731
    ys = lambda v: top + plot_h * (1 - (v - lo) / (hi - lo))  # noqa: E731
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{hi:.3g}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="tick">{lo:.3g}</text>',
    ]
    band = [(i, m) for i, m in means if m.ci_low is not None and m.ci_high is not None]
    if len(band) >= 2:
        upper = " ".join(f"{xs(i):.1f},{ys(m.ci_high):.1f}" for i, m in band if m.ci_high is not None)
        lower = " ".join(f"{xs(i):.1f},{ys(m.ci_low):.1f}" for i, m in reversed(band) if m.ci_low is not None)
        body.append(f'<polygon points="{upper} {lower}" class="band"/>')
    line = " ".join(f"{xs(i):.1f},{ys(m.mean):.1f}" for i, m in means if m.mean is not None)
    body.append(f'<polyline points="{line}" class="line"/>')
    for i, m in means:
        if m.mean is not None:
            tip = f"{runs[i].id} ({runs[i].created_at}): {_num(m.mean)} CI {_ci_cell(m)}"
            body.append(
                f'<circle cx="{xs(i):.1f}" cy="{ys(m.mean):.1f}" r="3.5" class="dot">'
                f"<title>{_e(tip)}</title></circle>"
            )
    for i, m in points:
        if m.mean is None:
            body.append(
                f'<text x="{xs(i):.1f}" y="{top + plot_h - 4}" text-anchor="middle" class="failed">✕'
                f"<title>{_e(runs[i].id)}: {_e(_mean_cell(m))}</title></text>"
            )
    body.append(f'<text x="{left}" y="{height - 6}" class="tick">{_e(_short(runs[0].id, 18))}</text>')
    if len(runs) > 1:
        body.append(
            f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" class="tick">'
            f"{_e(_short(runs[-1].id, 18))}</text>"
        )
    return _svg(width, height, f"{name} over runs", body)


# -- HTML -------------------------------------------------------------------------------------------
_CSS = """
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee5; --accent: #4a7bd0; --bad: #c0392b;
  --badbg: #fde2e1; --soft: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: #fff; max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
nav { margin: .8rem 0 0; font-size: .9rem; } nav a { margin-right: .9rem; color: var(--accent); }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts td:first-child, .manifest td:first-child { color: var(--muted); white-space: nowrap; }
.manifest td { word-break: break-word; }
.failed { color: var(--bad); font-weight: 600; }
.warn { background: #fff4d6; border-left: 4px solid #e0a100; padding: .5rem .8rem; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: .4rem 0 1rem; break-inside: avoid; }
figcaption { font-size: .85rem; color: var(--muted); }
svg.chart { max-width: 100%; height: auto; font-size: 11px; }
svg .grid { stroke: #e6e9ee; } svg .axis { stroke: #8a94a3; }
svg .tick { fill: var(--muted); font-size: 10px; }
svg .label, svg .value { fill: var(--ink); font-size: 11px; }
svg .bar { fill: var(--accent); } svg .hbar { fill: #6c93d8; }
svg .whisker { stroke: #1f2933; stroke-width: 1.5; }
svg .sig { fill: #d35400; } svg .nosig { fill: #b0b7c3; } svg text.failed { fill: var(--bad); }
svg .line { fill: none; stroke: var(--accent); stroke-width: 2; } svg .dot { fill: var(--accent); }
svg .band { fill: #4a7bd0; fill-opacity: .15; stroke: none; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: .4rem 0 1rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .8rem; min-width: 150px; }
.card b { display: block; font-size: 1.25rem; } .card span { color: var(--muted); font-size: .8rem; }
article.case { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .9rem; margin: .8rem 0;
  break-inside: avoid; }
article.case h3 { margin-top: 0; }
.answer { background: var(--soft); padding: .5rem .7rem; border-radius: 4px; white-space: pre-wrap; }
mark.flag, .flagtext { background: var(--badbg); color: #8e1b10; border-bottom: 2px solid var(--bad);
  padding: 0 2px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; margin: .5rem 0; }
.pair > div { border-left: 4px solid var(--bad); padding: .3rem .6rem; background: #fff8f7; }
.pair > div.evidence { border-left-color: var(--accent); background: #f6f8fc; }
.small { color: var(--muted); font-size: .82rem; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .8rem; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; } nav { display: none; }
  h2 { break-after: avoid; } section, figure, article, table { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _h_table(header: Sequence[str], rows: Iterable[Sequence[str]], text: Sequence[int] = (0,)) -> str:
    """A table from already-escaped cells; the columns not in ``text`` are numbers, right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c}</td>" if j in text else f'<td class="num">{c}</td>' for j, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _h_metrics(metrics: Sequence[MetricSummary]) -> str:
    rows = []
    for m in metrics:
        mean = _e(_mean_cell(m))
        if m.mean is None and m.failed:
            mean = f'<span class="failed">{mean}</span>'
        failed = f'<span class="failed">{m.failed}</span>' if m.failed else "0"
        rows.append([_e(m.name), mean, _e(_ci_cell(m)), str(m.n), failed])
    return _h_table(["Metric", "Mean", "95% CI", "n", "Failed"], rows)


def _h_kv(rows: Iterable[tuple[str, str]], cls: str = "facts") -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}"><tbody>{body}</tbody></table>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _marked_answer(answer: str, flagged: Sequence[dict[str, Any]]) -> str:
    """The answer escaped, its flagged sentences wrapped in red ``<mark>``."""
    spans: list[tuple[int, int, str]] = []
    cursor = 0
    for flag in flagged:
        text = str(flag.get("text", "")).strip()
        if not text:
            continue
        start = answer.find(text, cursor)
        if start < 0:
            start = answer.find(text)
        if start < 0:
            continue
        spans.append(
            (
                start,
                start + len(text),
                f"{flag.get('reason') or 'flagged'} (support {_num(flag.get('score'))})",
            )
        )
        cursor = start + len(text)
    out, pos = [], 0
    for start, end, tip in sorted(spans):
        if start < pos:
            continue
        out.append(_e(answer[pos:start]))
        out.append(f'<mark class="flag" title="{_e(tip)}">{_e(answer[start:end])}</mark>')
        pos = end
    out.append(_e(answer[pos:]))
    return "".join(out)


def _h_case(i: int, case: dict[str, Any]) -> str:
    qtype = f" · {case['qtype']}" if case.get("qtype") else ""
    head = (
        f"{i}. {case['sample_id']} · replicate {case['replicate']}{qtype} · grounding "
        f"{_num(case.get('grounding'))} · {case.get('flagged_count', 0)} flagged"
    )
    parts = [
        f'<article class="case"><h3>{_e(head)}</h3>',
        f"<p><b>Question</b> {_e(case.get('question', ''))}</p>",
        f'<div class="answer">{_marked_answer(str(case.get("answer", "")), case.get("flagged", []))}</div>',
    ]
    if case.get("reference_answers"):
        parts.append(f'<p class="small">Reference: {_e(" / ".join(map(str, case["reference_answers"])))}</p>')
    for flag in case.get("flagged", []):
        evidence = ", ".join(_source_label(ref) for ref in flag.get("evidence_sources", [])) or "no passage"
        cites = ", ".join(f"[{n}]" for n in flag.get("citations", [])) or "none"
        parts.append(
            '<div class="pair"><div>'
            f'<span class="flagtext">{_e(flag.get("text", ""))}</span>'
            f'<div class="small">support {_e(_num(flag.get("score")))} · '
            f"{_e(flag.get('reason') or 'flagged')} · cites {_e(cites)}</div></div>"
            f'<div class="evidence">{_e(flag.get("evidence_text") or "(no evidence text)")}'
            f'<div class="small">evidence: {_e(evidence)}</div></div></div>'
        )
    cited = ", ".join(_source_label(ref) for ref in case.get("citations", []))
    if cited:
        parts.append(f'<p class="small">Cited: {_e(cited)}</p>')
    return "".join(parts) + "</article>"


def _h_probe(name: str, probe: Any) -> str:
    parts = [f"<h3>{_e(name)}</h3>"]
    if not isinstance(probe, dict):
        return parts[0] + f"<p>{_e(_text(probe))}</p>"
    summary = probe.get("summary", {})
    if isinstance(summary, dict) and summary:
        parts.append(_h_kv((k, _text(v)) for k, v in _flatten(summary).items()))
    cases = probe.get("cases", [])
    if isinstance(cases, list) and cases:
        shown = cases[:PROBE_CASES]
        columns = _case_columns(shown)
        rows = [[_e(_text(c.get(k, "") if isinstance(c, dict) else c, 200)) for k in columns] for c in shown]
        parts.append(f'<p class="small">First {len(shown)} of {len(cases)} cases</p>')
        parts.append(_h_table([_e(c) for c in columns], rows, text=range(len(columns))))
    return "".join(parts)


def _distributions(run: RunRecord, limit: int = 5) -> list[tuple[str, list[float], int]]:
    """(label, per-answer values, failed count) for grounding, key per-sample metrics and latency."""
    answered = [r for r in run.results if not r.abstained and r.error is None]
    out = [("grounding (answered)", [r.grounding for r in answered if r.grounding is not None], 0)]
    order = {prefix: i for i, (prefix, _) in enumerate((("ragas.", ""), ("answer.", ""), ("retrieval.", "")))}
    names: list[str] = list(run.summary) + [n for r in run.results for n in r.metrics]
    seen: list[str] = []
    for name in names:
        if name not in seen and "grounding" not in name:
            seen.append(name)
    per_metric: list[tuple[int, int, str, list[float], int]] = []
    for position, name in enumerate(seen):
        raw = [r.metrics[name] for r in run.results if name in r.metrics]
        values = [v for v in raw if v is not None and math.isfinite(v)]
        if not values or not _is_score(*values):
            continue
        group = next((i for prefix, i in order.items() if name.startswith(prefix)), len(order))
        per_metric.append((group, position, name, values, len(raw) - len(values)))
    out += [(name, values, failed) for _, _, name, values, failed in sorted(per_metric)[:limit]]
    latency = [r.timings["total"] for r in run.results if isinstance(r.timings.get("total"), int | float)]
    if latency:
        out.append(("latency, total (s)", [float(v) for v in latency], 0))
    return out


def render_html(
    run: RunRecord, *, comparison: Comparison | None = None, history: Sequence[RunRecord] | None = None
) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script, nothing fetched)."""
    hall = _hallucination(run)
    groups = _groups(run.summary)
    runs = _runs_over_time(run, history) if history else []
    sections: list[tuple[str, str, str]] = []  # (id, title, body)

    headline = _headline(run.summary)
    body = _h_metrics(headline) if headline else "<p>No metrics.</p>"
    if run.status != "complete":
        body = (
            f'<p class="warn">Run {_e(run.status)}: the figures cover the answers finished before it '
            f"stopped.</p>{body}"
        )
    sections.append(("headline", "Headline metrics", body))

    dists = _distributions(run)
    figures = []
    for label, values, failed in dists:
        mean = sum(values) / len(values) if values else None
        caption = f"{label}: n={len(values)}, mean {_num(mean)}" + (f", {failed} failed" if failed else "")
        figures.append(_figure(svg_histogram(values, f"Distribution of {label}"), caption))
    sections.append(("distributions", "Score distributions", f'<div class="charts">{"".join(figures)}</div>'))

    for title, metrics in groups.items():
        scores = [m for m in metrics if _is_score(m.mean, m.ci_low, m.ci_high)]
        parts = []
        if scores:
            parts.append(
                _figure(
                    svg_metric_bars(scores, f"{title}: means with 95% CI"),
                    f"{title}: mean per metric, whiskers are the 95% CI.",
                )
            )
        if len(scores) < len(metrics):
            parts.append('<p class="small">Metrics outside [0, 1] (times, counts) are in the table only.</p>')
        parts.append(_h_metrics(metrics))
        sections.append((title.lower().replace(" ", "-"), title, "".join(parts)))

    failures = _failures(run)
    if failures:
        rows = [[_e(n), f'<span class="failed">{k}</span>', _e(r)] for n, k, r in failures]
        sections.append(
            (
                "failures",
                "Metric failures",
                "<p>Failed values are left out of the means (never counted as 0).</p>"
                + _h_table(["Metric", "Failed", "Most common reason"], rows, text=(0, 2)),
            )
        )

    if comparison:
        rows = [
            [
                _e(c.get("metric", "")),
                _e(_num(c.get("a"))) if c.get("a") is not None else '<span class="failed">failed</span>',
                _e(_num(c.get("b"))) if c.get("b") is not None else '<span class="failed">failed</span>',
                _e(_num(c.get("diff"))),
                _e(f"[{_num(c.get('ci_low'))}, {_num(c.get('ci_high'))}]"),
                _e(_p(c.get("p_value"))),
                "<b>yes</b>" if c.get("significant") else "no",
            ]
            for c in comparison
        ]
        sections.append(
            (
                "comparison",
                "Comparison with the baseline run",
                _figure(
                    svg_comparison(comparison),
                    "B − A per metric with its 95% CI; significant differences in orange and starred.",
                )
                + _h_table(["Metric", "A", "B", "B − A", "95% CI", "p", "Significant"], rows, text=(0, 6)),
            )
        )

    if runs:
        names = _history_metrics(run, runs)
        charts = "".join(_figure(svg_history(n, runs), f"{n} over {len(runs)} runs") for n in names)
        shown = names or [m.name for m in headline]
        rows = [
            [_e(r.id), _e(r.created_at)]
            + [_e(_mean_cell(r.summary[n])) if n in r.summary else "—" for n in shown]
            for r in runs
        ]
        sections.append(
            (
                "history",
                "History",
                f'<div class="charts">{charts}</div>'
                + _h_table(["Run", "Created", *(_e(n) for n in shown)], rows, text=(0, 1)),
            )
        )

    overall = hall.get("overall", {})
    cards = "".join(
        f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in _overall_rows(overall)
    )
    parts = [f'<div class="cards">{cards}</div>']
    if hall.get("by_source"):
        parts.append("<h3>By source document</h3>")
        parts.append(
            _h_table(
                SOURCE_HEADER,
                [
                    [_e(n)] + [_e(_num(row.get(k))) for k in SOURCE_KEYS]
                    for n, row in hall["by_source"].items()
                ],
            )
        )
    if hall.get("by_qtype"):
        parts.append("<h3>By question type</h3>")
        parts.append(
            _h_table(
                QTYPE_HEADER,
                [[_e(n)] + [_e(_num(row.get(k))) for k in QTYPE_KEYS] for n, row in hall["by_qtype"].items()],
            )
        )
    worst = hall.get("worst", [])[:WORST_IN_HTML]
    if worst:
        parts.append(f"<h3>Worst answers ({len(worst)} of {len(hall.get('worst', []))})</h3>")
        parts.append(
            '<p class="small">Lowest grounding first; flagged sentences in red, beside the passage '
            "the guard compared them with.</p>"
        )
        parts += [_h_case(i, case) for i, case in enumerate(worst, 1)]
    sections.append(("hallucinations", "Hallucinations", "".join(parts)))

    if run.probes:
        sections.append(("probes", "Probes", "".join(_h_probe(n, p) for n, p in run.probes.items())))

    sections.append(("manifest", "Run manifest", _h_kv(_manifest_rows(run.manifest), cls="manifest")))

    title = f"Evaluation report: {run.dataset} ({run.id})"
    nav = "".join(f'<a href="#{sid}">{_e(stitle)}</a>' for sid, stitle, _ in sections)
    content = "".join(
        f'<section id="{sid}"><h2>{_e(stitle)}</h2>{sbody}</section>' for sid, stitle, sbody in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{_h_kv(_run_facts(run))}<nav>{nav}</nav></header>"
        f"{content}<footer>Written by rag-app eval. Self-contained: no scripts, nothing loaded from the "
        "network.</footer></body></html>\n"
    )


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
