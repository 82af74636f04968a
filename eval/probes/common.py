"""What the probes share: asking the app (with fixed passages, or normally), comparing answers,
small statistics, and how many generator calls a probe makes."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from eval.answer_metrics import token_f1
from eval.perturb import BIAS_AXES, INJECTION_TEMPLATES, check_choice
from eval.types import EvalSample
from rag_app.prompting import strip_citations

if TYPE_CHECKING:
    from rag_app.answer import Answer
    from rag_app.documents import Hit
    from rag_app.rag import RAG


log = logging.getLogger(__name__)

DEFAULT_N = 20
"""Base questions a probe asks by default."""
PROBE_KINDS = ("bias", "robustness", "injection")
PERTURBATIONS = ("typo", "lower", "upper", "paraphrase", "distractor")
_CALLS_PER_QUESTION = {"bias": 1 + len(BIAS_AXES), "robustness": 1 + len(PERTURBATIONS)}


# -- asking --------------------------------------------------------------------------------
@dataclass
class _Asked:
    """An answer reduced to what the probes compare (or the error that stopped it)."""

    question: str
    text: str = ""
    generated: str = ""
    """What the model wrote, also when the guard withheld it."""
    abstained: bool = False
    grounding: float | None = None
    flagged: bool = False
    passages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    top_passage: str = ""
    called_generator: bool = False
    error: str | None = None


def _asked(question: str, answer: Answer) -> _Asked:
    grounding = answer.grounding
    generated = answer.text
    if answer.abstained and grounding is not None and grounding.sentences:
        generated = " ".join(s.text for s in grounding.sentences)
    return _Asked(
        question=question,
        text=answer.text,
        generated=generated,
        abstained=answer.abstained,
        grounding=grounding.score if grounding is not None else None,
        flagged=bool(grounding.flagged) if grounding is not None else False,
        passages=tuple(f"{c.source}:{c.start}-{c.end}" for c in answer.citations),
        sources=tuple(c.source for c in answer.citations),
        top_passage=answer.citations[0].text if answer.citations else "",
        called_generator="generation" in answer.timings,
    )


def _ask(ask: Callable[[str], Answer], question: str) -> _Asked:
    from rag_app.errors import RagAppError

    try:
        return _asked(question, ask(question))
    except RagAppError as exc:
        log.warning("probe question failed: %s", exc)
        return _Asked(question=question, error=str(exc))


def _fixed_ask(rag: RAG, question: str, hits: Sequence[Hit]) -> _Asked:
    """Ask over the given passages (:meth:`RAG.ask_with_passages`), not the index's search results."""
    return _ask(partial(rag.ask_with_passages, passages=hits), question)


def _search(rag: RAG, question: str) -> list[Hit]:
    from rag_app.errors import RagAppError

    try:
        return rag.search(question)
    except RagAppError as exc:
        log.warning("probe search failed: %s", exc)
        return []


# -- small helpers -------------------------------------------------------------------------
def _plain(text: str) -> str:
    return strip_citations(text)


def agreement(a: str, b: str) -> float:
    """Token F1 of two answers with their ``[n]`` citation marks removed."""
    return token_f1(_plain(a), _plain(b))


def _jaccard(a: Sequence[str], b: Sequence[str]) -> float | None:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _pick(samples: Sequence[EvalSample], n: int, seed: int) -> list[EvalSample]:
    """``n`` samples chosen by the seed, in dataset order (all of them when there are fewer)."""
    if len(samples) <= n:
        return list(samples)
    rng = random.Random(f"{seed}:pick")
    return [samples[i] for i in sorted(rng.sample(range(len(samples)), n))]


def probe_calls(kinds: Sequence[str] = PROBE_KINDS, n: int = DEFAULT_N) -> int:
    """Most generator calls the probes make with ``n`` base questions each (fewer when the app
    abstains before generating or a perturbation leaves a question unchanged)."""
    check_choice(kinds, PROBE_KINDS, "kind")
    per_question = {**_CALLS_PER_QUESTION, "injection": len(INJECTION_TEMPLATES)}
    return sum(per_question[kind] for kind in dict.fromkeys(kinds)) * max(0, n)


def _lowest(values: dict[str, float | None]) -> str | None:
    """The key with the lowest value, or None when none is lower than another."""
    kept = {k: v for k, v in values.items() if v is not None}
    if len(set(kept.values())) < 2:
        return None
    return min(kept, key=kept.__getitem__)


def _max(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return max(kept) if kept else None
