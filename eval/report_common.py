"""What the Markdown and the HTML report share: formatting of values, the metric groups and the
headline, failure reasons, the history and the hallucination tables' rows (see :mod:`eval.report`)."""

from __future__ import annotations

import html
import json
import math
import numbers
from collections import Counter
from collections.abc import Sequence
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
PROBE_CASES = 5
MAX_CELL = 300
MANIFEST_FIRST = ("corpus", "index", "model", "adapter", "seed", "version", "cost", "command")
"""Manifest keys containing these words come first, in this order."""

Comparison = list[dict[str, Any]]


# -- values -----------------------------------------------------------------------------------------
def clean_json(value: Any) -> Any:
    """JSON-ready: floats to 6 significant digits, NaN/inf to None, tuples to lists, others to str."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, numbers.Integral):  # numpy and other integer types
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return float(f"{number:.6g}") if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [clean_json(v) for v in value]
    return str(value)


def fmt_num(value: Any) -> str:
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


def fmt_text(value: Any, limit: int = MAX_CELL) -> str:
    """Any manifest/probe value as one line of text, cut at ``limit`` characters."""
    if isinstance(value, float | int | bool) or value is None:
        text = fmt_num(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(fmt_num(v) if isinstance(v, float) else str(v) for v in value)
    else:
        text = json.dumps(clean_json(value), ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mean_cell(metric: MetricSummary) -> str:
    if metric.mean is None or not math.isfinite(metric.mean):
        return f"failed ({metric.failed})" if metric.failed else "—"
    return fmt_num(metric.mean)


def ci_cell(metric: MetricSummary) -> str:
    if metric.ci_low is None or metric.ci_high is None:
        return "—"
    return f"[{fmt_num(metric.ci_low)}, {fmt_num(metric.ci_high)}]"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b`` keys (lists and scalars are leaves)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data} if prefix else {}


def manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest flattened, its key facts (corpus, models, seeds, versions, cost) first."""
    flat = flatten(manifest)

    def rank(key: str) -> int:
        lowered = key.lower()
        return next((i for i, word in enumerate(MANIFEST_FIRST) if word in lowered), len(MANIFEST_FIRST))

    keys = sorted(flat, key=lambda k: (rank(k), list(flat).index(k)))
    return [(k, fmt_text(flat[k])) for k in keys]


def fmt_p(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def is_score(*values: float | None) -> bool:
    return all(v is None or (math.isfinite(v) and -1e-9 <= v <= 1 + 1e-9) for v in values)


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def source_label(ref: dict[str, Any] | None) -> str:
    if not ref:
        return "—"
    page = f" p. {ref['page']}" if ref.get("page") is not None else ""
    return f"[{ref.get('number')}] {ref.get('source', '')}{page}"


def case_columns(cases: Sequence[Any], limit: int = 8) -> list[str]:
    columns: list[str] = []
    for case in cases:
        for key in case if isinstance(case, dict) else ["value"]:
            if key not in columns:
                columns.append(str(key))
    return columns[:limit]


# -- what the report shows --------------------------------------------------------------------------
def _group_of(name: str) -> str:
    return next((title for prefix, title in GROUPS if name.startswith(prefix)), "Other metrics")


def report_groups(summary: dict[str, MetricSummary]) -> dict[str, list[MetricSummary]]:
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


def report_headline(summary: dict[str, MetricSummary]) -> list[MetricSummary]:
    preferred = [summary[name] for name in HEADLINE if name in summary]
    if len(preferred) >= HEADLINE_PER_GROUP:
        return preferred
    return [m for metrics in report_groups(summary).values() for m in metrics[:HEADLINE_PER_GROUP]]


def report_failures(run: RunRecord) -> list[tuple[str, int, str]]:
    """Metric -> how many answers it failed on and the most common reason."""
    reasons: dict[str, Counter[str]] = {}
    for result in run.results:
        for name, value in result.metrics.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                reason = result.errors.get(name, "no value")
                reasons.setdefault(name, Counter())[" ".join(reason.split())[:200]] += 1
    rows = [(name, sum(c.values()), c.most_common(1)[0][0]) for name, c in reasons.items()]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def report_hallucination(run: RunRecord) -> dict[str, Any]:
    return run.hallucination or hallucination_report(run.results)


def runs_over_time(run: RunRecord, history: Sequence[RunRecord] | None) -> list[RunRecord]:
    """The history with this run added (when missing), oldest first."""
    runs = list(history or [])
    if all(r.id != run.id for r in runs):
        runs.append(run)
    return sorted(runs, key=lambda r: r.created_at)


def history_metrics(run: RunRecord, runs: Sequence[RunRecord], limit: int = 8) -> list[str]:
    """Headline metrics first, then the others, that have a mean in at least two runs."""
    names = [m.name for m in report_headline(run.summary)] + list(run.summary)
    out: list[str] = []
    for name in names:
        seen = sum(1 for r in runs if name in r.summary and r.summary[name].mean is not None)
        if seen >= 2 and name not in out:
            out.append(name)
    return out[:limit]


def run_facts(run: RunRecord) -> list[tuple[str, str]]:
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


def overall_rows(overall: dict[str, Any]) -> list[tuple[str, str]]:
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
    return [(label, fmt_num(overall.get(key))) for key, label in labels if key in overall]


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
