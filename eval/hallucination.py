"""Hallucination report: which answers the guard flagged, against what evidence, and where.

:func:`hallucination_report` turns the per-answer results of a run into a JSON-ready dict:

* ``overall``: answers, answered (neither abstained nor failed), abstained, errors, answers with
  at least one flagged sentence, sentences, flagged sentences, the flagged share of the sentences
  and the mean grounding of the answered ones;
* ``by_source``: per source document, the answered answers and flagged sentences attributed to
  it and their mean grounding. A flagged sentence is attributed to the sources of the passages
  its evidence and citations point to (the top-ranked passage when they point nowhere); an answer
  to the sources of its flagged sentences, or to its top passage when nothing is flagged;
* ``by_qtype``: the ``overall`` figures per question type;
* ``answers``: every answer, worst first: its flagged sentences with the evidence text the guard
  compared them to and that evidence's source/page, its citations and its grounding score;
* ``worst``: the first ``worst`` answered ones of ``answers`` (lowest grounding; ties: more
  flagged sentences first; answers without a grounding score last).

Pure Python; it imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from eval.types import EvalSample, FlaggedSentence, Passage, SampleResult

NO_SOURCE = "(no passage)"
"""The source an answer is attributed to when it had no retrieved passage."""


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values, or None when there are none."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _answered(result: SampleResult) -> bool:
    return not result.abstained and result.error is None


def _top_passage(passages: list[Passage]) -> Passage | None:
    """The passage ranked first (numbered lowest) in the prompt."""
    return min(passages, key=lambda p: p.number) if passages else None


def _sentence_sources(sentence: FlaggedSentence, passages: list[Passage]) -> list[str]:
    """Sources of the passages a sentence's evidence and citations point to, else of the top passage."""
    by_number = {p.number: p for p in passages}
    sources: list[str] = []
    for number in [*sentence.evidence, *sentence.citations]:
        passage = by_number.get(number)
        if passage is not None and passage.source not in sources:
            sources.append(passage.source)
    if not sources:
        top = _top_passage(passages)
        sources.append(top.source if top is not None else NO_SOURCE)
    return sources


def _answer_sources(result: SampleResult) -> list[str]:
    """The sources an answer is attributed to (see the module docstring)."""
    sources: list[str] = []
    for sentence in result.flagged:
        for source in _sentence_sources(sentence, result.passages):
            if source not in sources:
                sources.append(source)
    if not sources:
        top = _top_passage(result.passages)
        sources.append(top.source if top is not None else NO_SOURCE)
    return sources


def _overall(results: list[SampleResult]) -> dict[str, Any]:
    """The headline figures of a set of answers."""
    answered = [r for r in results if _answered(r)]
    sentences = sum(len(r.sentences) for r in answered)
    flagged = sum(len(r.flagged) for r in answered)
    with_flagged = sum(1 for r in answered if r.flagged)
    return {
        "answers": len(results),
        "answered": len(answered),
        "abstained": sum(1 for r in results if r.abstained),
        "errors": sum(1 for r in results if r.error is not None and not r.abstained),
        "with_flagged": with_flagged,
        "flagged_answer_share": with_flagged / len(answered) if answered else None,
        "sentences": sentences,
        "flagged_sentences": flagged,
        "flagged_sentence_share": flagged / sentences if sentences else None,
        "mean_grounding": _mean(r.grounding for r in answered),
    }


def _passage_ref(passage: Passage) -> dict[str, Any]:
    return {"number": passage.number, "source": passage.source, "page": passage.page}


def _case(result: SampleResult, sample: EvalSample | None) -> dict[str, Any]:
    """One answer of the report: its flagged sentences beside their evidence, citations, score."""
    by_number = {p.number: p for p in result.passages}
    flagged = []
    for sentence in result.flagged:
        pointed = [by_number[n] for n in sentence.evidence if n in by_number]
        flagged.append(
            {
                "text": sentence.text,
                "score": sentence.score,
                "reason": sentence.reason,
                "citations": list(sentence.citations),
                "evidence": list(sentence.evidence),
                "evidence_text": sentence.evidence_text,
                "evidence_sources": [_passage_ref(p) for p in pointed],
                "sources": _sentence_sources(sentence, result.passages),
            }
        )
    cited = [p for p in result.passages if p.cited]
    top = _top_passage(result.passages)
    return {
        "sample_id": result.sample_id,
        "replicate": result.replicate,
        "qtype": result.qtype or (sample.qtype if sample is not None else ""),
        "question": result.question,
        "answer": result.answer,
        "reference_answers": list(sample.answers) if sample is not None else [],
        "abstained": result.abstained,
        "error": result.error,
        "grounding": result.grounding,
        "sentences": len(result.sentences),
        "flagged_count": len(flagged),
        "flagged": flagged,
        "citations": [_passage_ref(p) for p in cited],
        "top_passage": _passage_ref(top) if top is not None else None,
        "sources": _answer_sources(result) if _answered(result) else [],
    }


def _worst_first(case: dict[str, Any]) -> tuple[int, float, int, str, int]:
    """Sort key: answered before abstained/failed, lowest grounding, most flags, then id."""
    answered = not case["abstained"] and case["error"] is None
    grounding = case["grounding"]
    return (
        0 if answered else 1,
        grounding if grounding is not None else math.inf,
        -case["flagged_count"],
        case["sample_id"],
        case["replicate"],
    )


def hallucination_report(
    results: list[SampleResult],
    samples_by_id: dict[str, EvalSample] | None = None,
    *,
    worst: int = 50,
) -> dict[str, Any]:
    """The hallucination report of a run's results (JSON-ready; see the module docstring).

    ``samples_by_id`` adds the reference answers and fills in a missing question type;
    ``worst`` bounds the ``worst`` list (``answers`` always holds every answer).
    """
    samples = samples_by_id or {}
    qtypes = [r.qtype or getattr(samples.get(r.sample_id), "qtype", "") or "(none)" for r in results]

    by_source: dict[str, dict[str, Any]] = {}
    groundings: dict[str, list[float | None]] = {}
    for result in results:
        if not _answered(result):
            continue
        for source in _answer_sources(result):
            row = by_source.setdefault(
                source, {"answers": 0, "with_flagged": 0, "flagged_sentences": 0, "mean_grounding": None}
            )
            row["answers"] += 1
            # An answer with flags is attributed only to its flagged sentences' sources.
            row["with_flagged"] += 1 if result.flagged else 0
            groundings.setdefault(source, []).append(result.grounding)
        for sentence in result.flagged:
            for source in _sentence_sources(sentence, result.passages):
                by_source[source]["flagged_sentences"] += 1
    for source, row in by_source.items():
        row["mean_grounding"] = _mean(groundings[source])
    ordered_sources = dict(
        sorted(by_source.items(), key=lambda kv: (-kv[1]["flagged_sentences"], -kv[1]["answers"], kv[0]))
    )

    by_qtype = {
        qtype: _overall([r for r, q in zip(results, qtypes, strict=True) if q == qtype])
        for qtype in sorted(set(qtypes))
    }

    cases = sorted((_case(r, samples.get(r.sample_id)) for r in results), key=_worst_first)
    worst_cases = [c for c in cases if not c["abstained"] and c["error"] is None][: max(worst, 0)]
    return {
        "overall": _overall(results),
        "by_source": ordered_sources,
        "by_qtype": by_qtype,
        "worst": worst_cases,
        "answers": cases,
    }
