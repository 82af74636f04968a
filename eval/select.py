"""Active-learning selection: the answers of a run most likely wrong, as training rows.

Each candidate gets a score in [0, 1] from its strongest signal:

* ``thumbs-down``: a user marked the answer wrong in the app (1.0; the feedback store);
* ``wrong``: 1 - token F1 against the reference answer (when the dataset has one);
* ``low grounding``: 1 - the guard's support score;
* ``abstained``: the app said "not in the documents" although the reference says otherwise;
* ``replicate disagreement``: 1 - mean pairwise token F1 of the replicates' answers.

Rows are written in the JSONL that :func:`finetune.data.jsonl_examples` reads: ``question``,
``context`` (the reference passage, or the passage the app leaned on), ``answer`` (the
reference answer or the user's correction), ``distractors`` (the other retrieved passages:
hard negatives), plus ``id``, ``source``, ``score`` and ``reasons``. A candidate with no known
right answer cannot become a training target; it goes to ``<out>.unlabelled.jsonl`` with the
app's answer, for a person to label, and is never written as a target.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.answer_metrics import best_over_truths, token_f1
from eval.types import EvalSample, RunRecord, SampleResult

DISTRACTORS = 3


@dataclass
class Candidate:
    """One question proposed for retraining."""

    id: str
    question: str
    score: float
    reasons: list[str]
    context: str
    source: str
    answer: str | None
    """The right answer when known (reference or correction)."""
    app_answer: str
    distractors: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "context": self.context,
            "answer": self.answer,
            "distractors": self.distractors,
            "source": self.source,
            "score": round(self.score, 4),
            "reasons": self.reasons,
            "app_answer": self.app_answer,
        }


def _agreement(answers: list[str]) -> float:
    pairs = list(itertools.combinations(answers, 2))
    return sum(token_f1(a, b) for a, b in pairs) / len(pairs) if pairs else 1.0


def _context(results: list[SampleResult], sample: EvalSample | None) -> tuple[str, str, list[str]]:
    """(context, its source, distractors): the reference passage when known, else the evidence
    or first cited passage of the first replicate, else its top passage."""
    passages = results[0].passages
    if sample is not None and sample.contexts:
        context = sample.contexts[0]
        source = next(
            (p.source for p in passages if context[:80] in p.text), sample.metadata.get("source", "")
        )
    else:
        evidence = [n for s in results[0].sentences for n in (s.evidence or s.citations)]
        chosen = next((p for p in passages if p.number in evidence), None) or next(
            (p for p in passages if p.cited), passages[0] if passages else None
        )
        context, source = (chosen.text, chosen.source) if chosen else ("", "")
    distractors = [p.text for p in passages if p.text != context and context not in p.text][:DISTRACTORS]
    return context, source, distractors


def run_candidates(record: RunRecord, samples: dict[str, EvalSample]) -> list[Candidate]:
    """Score every question of ``record`` (all replicates together)."""
    by_sample: dict[str, list[SampleResult]] = defaultdict(list)
    for result in record.results:
        by_sample[result.sample_id].append(result)
    out = []
    for sample_id, results in by_sample.items():
        results.sort(key=lambda r: r.replicate)
        sample = samples.get(sample_id)
        signals: dict[str, float] = {}
        first = results[0]
        if first.error:
            continue
        if sample is not None and sample.answers:
            if first.abstained:
                signals["abstained"] = 1.0
            else:
                f1 = best_over_truths(token_f1, first.answer, sample.answers)
                signals["wrong"] = 1.0 - f1
        if not first.abstained and first.grounding is not None:
            signals["low grounding"] = 1.0 - first.grounding
        if len(results) > 1:
            signals["replicate disagreement"] = 1.0 - _agreement([r.answer for r in results])
        if not signals:
            continue
        context, source, distractors = _context(results, sample)
        if not context:
            continue
        score = max(signals.values())
        reasons = [
            f"{name} {value:.2f}"
            for name, value in sorted(signals.items(), key=lambda kv: -kv[1])
            if value > 0
        ]
        answer = sample.answers[0] if sample is not None and sample.answers else None
        out.append(
            Candidate(
                sample_id, first.question, score, reasons, context, source, answer, first.answer, distractors
            )
        )
    return out


def feedback_candidates(feedback: Any, index_dir: str | None = None) -> list[Candidate]:
    """Thumbs-down answers from the app's :class:`rag_app.feedback.FeedbackStore` (score 1.0)."""
    out = []
    wanted = Path(index_dir).resolve() if index_dir else None
    for row in feedback.rows(rating=-1):
        if wanted is not None and Path(row.index_dir).resolve() != wanted:
            continue
        citations = row.answer.get("citations", [])
        cited = [c for c in citations if c.get("cited")] or citations
        if not cited:
            continue
        context = cited[0]["text"]
        distractors = [c["text"] for c in citations if c["text"] != context][:DISTRACTORS]
        reasons = ["thumbs-down"] + (["user correction"] if row.correction else [])
        out.append(
            Candidate(
                f"feedback-{row.id}",
                row.question,
                1.0,
                reasons,
                context,
                cited[0].get("source", ""),
                row.correction,
                row.answer_text,
                distractors,
            )
        )
    return out


def select(
    record: RunRecord,
    samples: dict[str, EvalSample],
    n: int = 100,
    *,
    feedback: Any = None,
    index_dir: str | None = None,
) -> list[Candidate]:
    """The ``n`` candidates most likely wrong, highest score first (one per question)."""
    pool = run_candidates(record, samples)
    if feedback is not None:
        pool += feedback_candidates(feedback, index_dir)
    best: dict[str, Candidate] = {}
    for candidate in sorted(pool, key=lambda c: (-c.score, not c.answer, c.id)):  # labelled first on ties
        key = " ".join(candidate.question.lower().split())
        if key not in best:
            best[key] = candidate
        elif candidate.answer and not best[key].answer:  # a correction labels a run's question
            best[key].answer = candidate.answer
            best[key].reasons += candidate.reasons
    return list(best.values())[:n]


def write_selection(candidates: list[Candidate], out: str | Path) -> dict[str, Any]:
    """Labelled rows to ``out``, unlabelled ones to ``<out stem>.unlabelled.jsonl``; returns counts."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labelled = [c for c in candidates if c.answer]
    unlabelled = [c for c in candidates if not c.answer]
    files = {"labelled": out, "unlabelled": out.with_name(out.stem + ".unlabelled.jsonl")}
    for name, rows in (("labelled", labelled), ("unlabelled", unlabelled)):
        tmp = files[name].with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for c in rows:
                handle.write(json.dumps(c.row(), ensure_ascii=False) + "\n")
        tmp.replace(files[name])
    reasons: dict[str, int] = defaultdict(int)
    for c in candidates:
        for reason in c.reasons:
            reasons[reason.rsplit(" ", 1)[0] if reason[-1].isdigit() else reason] += 1
    return {
        "selected": len(candidates),
        "labelled": len(labelled),
        "unlabelled": len(unlabelled),
        "files": {k: str(v) for k, v in files.items()},
        "reasons": dict(reasons),
    }
