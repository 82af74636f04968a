"""The robustness probe: typos, case, a paraphrase and distractor passages, each answer compared
with the unperturbed one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.answer_metrics import best_over_truths, token_f1
from eval.index_copy import planted_document, temporary_copy
from eval.perturb import add_typos, check_choice, distractor_passages, paraphrase
from eval.probes.common import (
    DEFAULT_N,
    PERTURBATIONS,
    _ask,
    _Asked,
    _jaccard,
    _lowest,
    _mean,
    _pick,
    _plain,
    _r,
    agreement,
)
from eval.types import EvalSample

if TYPE_CHECKING:
    from rag_app.documents import LoadedDocument
    from rag_app.rag import RAG


def robustness_probe(
    rag: RAG,
    samples: Sequence[EvalSample],
    *,
    n: int = DEFAULT_N,
    seed: int = 0,
    perturbations: Sequence[str] = PERTURBATIONS,
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Each question unperturbed and perturbed; ``1 + len(perturbations)`` calls per question at most.

    Returns ``{"summary", "perturbations": {name: {n, mean_agreement, mean_f1_change,
    mean_grounding_change, abstention_change_rate, abstained_rate, mean_retrieval_overlap}}, "cases"}``;
    retrieval overlap is the Jaccard of the retrieved passages (source and span).
    """
    check_choice(perturbations, PERTURBATIONS, "perturbation")
    perturbations = list(dict.fromkeys(perturbations))
    chosen = _pick(samples, n, seed)
    base = [_ask(rag.ask, s.question) for s in chosen]
    calls = sum(b.called_generator for b in base)
    cases: list[dict[str, Any]] = []
    edits: dict[str, Callable[[EvalSample], str]] = {
        "typo": lambda s: add_typos(s.question, seed=f"{seed}:{s.id}"),
        "lower": lambda s: s.question.lower(),
        "upper": lambda s: s.question.upper(),
        "paraphrase": lambda s: paraphrase(s.question),
    }
    for name in perturbations:
        if name == "distractor":
            continue
        for sample, b in zip(chosen, base, strict=True):
            question = edits[name](sample)
            if question.strip() == sample.question.strip():
                continue  # nothing to compare (e.g. an all-lower question lower-cased)
            answer = _ask(rag.ask, question)
            calls += answer.called_generator
            cases.append(_robust_case(sample, name, b, answer))
    if "distractor" in perturbations and chosen:
        with temporary_copy(rag, work_dir) as copy:
            planted: list[LoadedDocument] = []
            for i, (sample, b) in enumerate(zip(chosen, base, strict=True)):
                own = set(b.sources)
                others = [o for o in _rotate(base, i) if o.sources and o.sources[0] not in own]
                unrelated = [o.top_passage for o in others[:1]]
                for j, text in enumerate(distractor_passages(sample.question, unrelated)):
                    planted.append(planted_document(f"probe-distractor/{i}-{j}.txt", text))
            copy.add_documents(planted)
            for sample, b in zip(chosen, base, strict=True):
                answer = _ask(copy.ask, sample.question)
                calls += answer.called_generator
                case = _robust_case(sample, "distractor", b, answer)
                case["distractor_retrieved"] = any(s.startswith("probe-distractor/") for s in answer.sources)
                cases.append(case)
    per = {
        name: _perturbation_report([c for c in cases if c["perturbation"] == name]) for name in perturbations
    }
    summary = {
        "questions": len(chosen),
        "cases": len(cases),
        "mean_agreement": _mean([c["agreement"] for c in cases]),
        "lowest_agreement_perturbation": _lowest({k: v["mean_agreement"] for k, v in per.items()}),
        "mean_f1_change": _mean([c["f1_change"] for c in cases]),
        "abstention_change_rate": _mean(
            [float(c["abstained"] != c["abstained_base"]) for c in cases if not c["error"]]
        ),
        "generator_calls": calls,
    }
    return {
        "summary": summary,
        "perturbations": per,
        "cases": cases,
        "config": {"n": n, "seed": seed, "perturbations": perturbations},
    }


def _rotate(items: Sequence[_Asked], i: int) -> list[_Asked]:
    """The other items, starting after ``i`` (so each question borrows from its neighbour)."""
    return [*items[i + 1 :], *items[:i]]


def _robust_case(sample: EvalSample, name: str, base: _Asked, answer: _Asked) -> dict[str, Any]:
    error = base.error or answer.error
    f1_base = f1 = None
    if sample.answers and not error:
        f1_base = best_over_truths(token_f1, _plain(base.text), sample.answers)
        f1 = best_over_truths(token_f1, _plain(answer.text), sample.answers)
    g_change = (
        None if base.grounding is None or answer.grounding is None else answer.grounding - base.grounding
    )
    return {  # the first keys are the columns a report shows
        "perturbation": name,
        "perturbed_question": answer.question,
        "agreement": None if error else _r(agreement(base.text, answer.text)),
        "f1_change": None if f1 is None or f1_base is None else _r(f1 - f1_base),
        "grounding_change": _r(g_change),
        "abstained": answer.abstained,
        "base_answer": base.text,
        "answer": answer.text,
        "retrieval_overlap": None if error else _r(_jaccard(base.passages, answer.passages)),
        "sample_id": sample.id,
        "question": sample.question,
        "f1_base": _r(f1_base),
        "f1": _r(f1),
        "grounding_base": _r(base.grounding),
        "grounding": _r(answer.grounding),
        "abstained_base": base.abstained,
        "error": error,
    }


def _perturbation_report(cases: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [c for c in cases if not c["error"]]
    return {
        "n": len(cases),
        "errors": len(cases) - len(ok),
        "mean_agreement": _mean([c["agreement"] for c in ok]),
        "mean_f1_change": _mean([c["f1_change"] for c in ok]),
        "mean_grounding_change": _mean([c["grounding_change"] for c in ok]),
        "abstention_change_rate": _mean([float(c["abstained"] != c["abstained_base"]) for c in ok]),
        "abstained_rate": _mean([float(c["abstained"]) for c in ok]),
        "base_abstained_rate": _mean([float(c["abstained_base"]) for c in ok]),
        "mean_retrieval_overlap": _mean([c["retrieval_overlap"] for c in ok]),
    } | (
        {"distractor_retrieved_rate": _mean([float(c["distractor_retrieved"]) for c in ok])}
        if any("distractor_retrieved" in c for c in ok)
        else {}
    )
