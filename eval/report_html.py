"""The report as one self-contained HTML page (:func:`render_html`): inline CSS and SVG charts
(:mod:`eval.charts`), no script, nothing fetched; see :mod:`eval.report`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from eval.charts import svg_comparison, svg_histogram, svg_history, svg_metric_bars
from eval.report_common import (
    PROBE_CASES,
    QTYPE_HEADER,
    QTYPE_KEYS,
    SOURCE_HEADER,
    SOURCE_KEYS,
    Comparison,
    case_columns,
    ci_cell,
    esc,
    flatten,
    fmt_num,
    fmt_p,
    fmt_text,
    history_metrics,
    is_score,
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
from eval.types import MetricSummary, RunRecord

WORST_IN_HTML = 20

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
        mean = esc(mean_cell(m))
        if m.mean is None and m.failed:
            mean = f'<span class="failed">{mean}</span>'
        failed = f'<span class="failed">{m.failed}</span>' if m.failed else "0"
        rows.append([esc(m.name), mean, esc(ci_cell(m)), str(m.n), failed])
    return _h_table(["Metric", "Mean", "95% CI", "n", "Failed"], rows)


def _h_kv(rows: Iterable[tuple[str, str]], cls: str = "facts") -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}"><tbody>{body}</tbody></table>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


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
                f"{flag.get('reason') or 'flagged'} (support {fmt_num(flag.get('score'))})",
            )
        )
        cursor = start + len(text)
    out, pos = [], 0
    for start, end, tip in sorted(spans):
        if start < pos:
            continue
        out.append(esc(answer[pos:start]))
        out.append(f'<mark class="flag" title="{esc(tip)}">{esc(answer[start:end])}</mark>')
        pos = end
    out.append(esc(answer[pos:]))
    return "".join(out)


def _h_case(i: int, case: dict[str, Any]) -> str:
    qtype = f" · {case['qtype']}" if case.get("qtype") else ""
    head = (
        f"{i}. {case['sample_id']} · replicate {case['replicate']}{qtype} · grounding "
        f"{fmt_num(case.get('grounding'))} · {case.get('flagged_count', 0)} flagged"
    )
    parts = [
        f'<article class="case"><h3>{esc(head)}</h3>',
        f"<p><b>Question</b> {esc(case.get('question', ''))}</p>",
        f'<div class="answer">{_marked_answer(str(case.get("answer", "")), case.get("flagged", []))}</div>',
    ]
    if case.get("reference_answers"):
        parts.append(
            f'<p class="small">Reference: {esc(" / ".join(map(str, case["reference_answers"])))}</p>'
        )
    for flag in case.get("flagged", []):
        evidence = ", ".join(source_label(ref) for ref in flag.get("evidence_sources", [])) or "no passage"
        cites = ", ".join(f"[{n}]" for n in flag.get("citations", [])) or "none"
        parts.append(
            '<div class="pair"><div>'
            f'<span class="flagtext">{esc(flag.get("text", ""))}</span>'
            f'<div class="small">support {esc(fmt_num(flag.get("score")))} · '
            f"{esc(flag.get('reason') or 'flagged')} · cites {esc(cites)}</div></div>"
            f'<div class="evidence">{esc(flag.get("evidence_text") or "(no evidence text)")}'
            f'<div class="small">evidence: {esc(evidence)}</div></div></div>'
        )
    cited = ", ".join(source_label(ref) for ref in case.get("citations", []))
    if cited:
        parts.append(f'<p class="small">Cited: {esc(cited)}</p>')
    return "".join(parts) + "</article>"


def _h_probe(name: str, probe: Any) -> str:
    parts = [f"<h3>{esc(name)}</h3>"]
    if not isinstance(probe, dict):
        return parts[0] + f"<p>{esc(fmt_text(probe))}</p>"
    summary = probe.get("summary", {})
    if isinstance(summary, dict) and summary:
        parts.append(_h_kv((k, fmt_text(v)) for k, v in flatten(summary).items()))
    cases = probe.get("cases", [])
    if isinstance(cases, list) and cases:
        shown = cases[:PROBE_CASES]
        columns = case_columns(shown)
        rows = [
            [esc(fmt_text(c.get(k, "") if isinstance(c, dict) else c, 200)) for k in columns] for c in shown
        ]
        parts.append(f'<p class="small">First {len(shown)} of {len(cases)} cases</p>')
        parts.append(_h_table([esc(c) for c in columns], rows, text=range(len(columns))))
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
        if not values or not is_score(*values):
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
    hall = report_hallucination(run)
    groups = report_groups(run.summary)
    runs = runs_over_time(run, history) if history else []
    sections: list[tuple[str, str, str]] = []  # (id, title, body)

    headline = report_headline(run.summary)
    body = _h_metrics(headline) if headline else "<p>No metrics.</p>"
    if run.status != "complete":
        body = (
            f'<p class="warn">Run {esc(run.status)}: the figures cover the answers finished before it '
            f"stopped.</p>{body}"
        )
    sections.append(("headline", "Headline metrics", body))

    dists = _distributions(run)
    figures = []
    for label, values, failed in dists:
        mean = sum(values) / len(values) if values else None
        caption = f"{label}: n={len(values)}, mean {fmt_num(mean)}" + (f", {failed} failed" if failed else "")
        figures.append(_figure(svg_histogram(values, f"Distribution of {label}"), caption))
    sections.append(("distributions", "Score distributions", f'<div class="charts">{"".join(figures)}</div>'))

    for title, metrics in groups.items():
        scores = [m for m in metrics if is_score(m.mean, m.ci_low, m.ci_high)]
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

    failures = report_failures(run)
    if failures:
        rows = [[esc(n), f'<span class="failed">{k}</span>', esc(r)] for n, k, r in failures]
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
                esc(c.get("metric", "")),
                esc(fmt_num(c.get("a"))) if c.get("a") is not None else '<span class="failed">failed</span>',
                esc(fmt_num(c.get("b"))) if c.get("b") is not None else '<span class="failed">failed</span>',
                esc(fmt_num(c.get("diff"))),
                esc(f"[{fmt_num(c.get('ci_low'))}, {fmt_num(c.get('ci_high'))}]"),
                esc(fmt_p(c.get("p_value"))),
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
        names = history_metrics(run, runs)
        charts = "".join(_figure(svg_history(n, runs), f"{n} over {len(runs)} runs") for n in names)
        shown = names or [m.name for m in headline]
        rows = [
            [esc(r.id), esc(r.created_at)]
            + [esc(mean_cell(r.summary[n])) if n in r.summary else "—" for n in shown]
            for r in runs
        ]
        sections.append(
            (
                "history",
                "History",
                f'<div class="charts">{charts}</div>'
                + _h_table(["Run", "Created", *(esc(n) for n in shown)], rows, text=(0, 1)),
            )
        )

    overall = hall.get("overall", {})
    cards = "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in overall_rows(overall)
    )
    parts = [f'<div class="cards">{cards}</div>']
    if hall.get("by_source"):
        parts.append("<h3>By source document</h3>")
        parts.append(
            _h_table(
                SOURCE_HEADER,
                [
                    [esc(n)] + [esc(fmt_num(row.get(k))) for k in SOURCE_KEYS]
                    for n, row in hall["by_source"].items()
                ],
            )
        )
    if hall.get("by_qtype"):
        parts.append("<h3>By question type</h3>")
        parts.append(
            _h_table(
                QTYPE_HEADER,
                [
                    [esc(n)] + [esc(fmt_num(row.get(k))) for k in QTYPE_KEYS]
                    for n, row in hall["by_qtype"].items()
                ],
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

    sections.append(("manifest", "Run manifest", _h_kv(manifest_rows(run.manifest), cls="manifest")))

    title = f"Evaluation report: {run.dataset} ({run.id})"
    nav = "".join(f'<a href="#{sid}">{esc(stitle)}</a>' for sid, stitle, _ in sections)
    content = "".join(
        f'<section id="{sid}"><h2>{esc(stitle)}</h2>{sbody}</section>' for sid, stitle, sbody in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>{_h_kv(run_facts(run))}<nav>{nav}</nav></header>"
        f"{content}<footer>Written by rag-app eval. Self-contained: no scripts, nothing loaded from the "
        "network.</footer></body></html>\n"
    )
