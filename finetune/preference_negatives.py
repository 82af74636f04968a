"""Hard negatives for grounded examples: what counts as a wrong answer, the rule-made negatives of
:data:`finetune.config.RULE_NEGATIVES` (:func:`contrastive_pairs`) and the generator's own wrong
answers (:func:`model_negatives`). See :mod:`finetune.preferences` for what each type is."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from finetune.config import RULE_NEGATIVES, TrainingError
from finetune.data import Example, digest, show
from finetune.preference_rows import make_pair, prompt_key
from rag_app.guard.text import STOPWORDS
from rag_app.prompting import NOT_FOUND, is_not_found, strip_citations

_NUMBER = re.compile(r"\d[\d,.]*\d|\d")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MAX_SPAN_WORDS = 30
"""A distractor sentence longer than this is cut to its first words (answers are short)."""


# -- what counts as wrong -----------------------------------------------------------------------
def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    from rag_app.answer_match import normalize_answer

    return str(normalize_answer(strip_citations(text)))


def is_wrong(text: str, answers: Sequence[str]) -> bool:
    """No gold answer inside ``text`` and ``text`` is none of them (citations ignored)."""
    clean = normalize(text)
    if not clean:
        return False
    golds = [normalize(a) for a in answers if normalize(a)]
    return all(g != clean and g not in clean for g in golds)


def holds(passage: str, answers: Sequence[str]) -> bool:
    """``passage`` contains one of ``answers`` (normalised)."""
    text = normalize(passage)
    return any(normalize(a) and normalize(a) in text for a in answers)


# -- contrastive pairs from grounded examples -------------------------------------------------
def contrastive_pairs(
    examples: Iterable[Example],
    *,
    seed: int = 0,
    negatives: Sequence[str] = RULE_NEGATIVES,
    source: str = "squad",
) -> list[dict[str, Any]]:
    """Preference rows of the rule negatives in ``negatives`` for each example (see module doc)."""
    unknown = sorted(set(negatives) - set(RULE_NEGATIVES))
    if unknown:
        raise TrainingError(f"unknown negative types {unknown}; choose from {', '.join(RULE_NEGATIVES)}")
    rng = random.Random(seed)
    rows = []
    for example in examples:
        shown = show(example, rng)
        group = str(example.meta.get("article") or example.meta.get("source") or digest(example.question))
        passages = [p.text for p in shown.passages]
        meta = {
            "source": source,
            "group": group,
            "question": example.question,
            "answers": list(example.answers),
            "answerable": shown.cited is not None,
            "cited": shown.cited,
            "passages": passages,
            **{k: v for k, v in example.meta.items() if k in ("id", "context_id", "article")},
        }
        if shown.cited is None:
            if "answered_unanswerable" in negatives:
                made = _distractor_answer(example.question, passages, set(), example.answers)
                if made is not None:
                    rows.append(make_pair(shown.messages, NOT_FOUND, made, "answered_unanswerable", meta))
            continue
        assert example.answer is not None
        chosen = f"{example.answer} [{shown.cited}]"
        answers = example.answers or [example.answer]
        for kind in RULE_NEGATIVES[:4]:
            if kind in negatives:
                rejected = _rule_negative(
                    kind, example.question, example.answer, passages, answers, shown.cited, rng
                )
                if rejected is not None and rejected != chosen:
                    rows.append(make_pair(shown.messages, chosen, rejected, kind, meta))
    return rows


def _rule_negative(
    kind: str,
    question: str,
    answer: str,
    passages: Sequence[str],
    answers: Sequence[str],
    cited: int,
    rng: random.Random,
) -> str | None:
    """The rejected text of rule type ``kind`` for an answerable example, or ``None`` when it has none."""
    if kind == "distractor_span":
        return _distractor_answer(question, passages, {cited}, answers)
    if kind == "swapped_fact":
        return _swapped(answer, passages, answers, cited, rng)
    if kind == "wrong_citation":
        return _wrong_citation(answer, passages, answers, rng)
    return NOT_FOUND  # false_abstention


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def _distractor_answer(
    question: str, passages: Sequence[str], skip: set[int | None], answers: Sequence[str]
) -> str | None:
    """The sentence of a passage not in ``skip`` (1-based) that shares the most words with the
    question and holds no gold answer, cited with its number: a confident, plausible wrong answer."""
    wanted = _content_words(question)
    best: tuple[int, str, int] | None = None
    for n, passage in enumerate(passages, 1):
        if n in skip:
            continue
        for sentence in _SENTENCE.split(" ".join(passage.split())):
            if answers and not is_wrong(sentence, answers):
                continue
            overlap = len(wanted & _content_words(sentence))
            if best is None or overlap > best[0]:
                best = (overlap, sentence, n)
    if best is None or not best[1].strip():
        return None
    words = best[1].split()
    text = " ".join(words[:MAX_SPAN_WORDS]).rstrip(",;:")
    return f"{text} [{best[2]}]"


def _swapped(
    answer: str | None, passages: Sequence[str], answers: Sequence[str], cited: int | None, rng: random.Random
) -> str | None:
    """``answer`` with its first number (else its first name) replaced by another one from the
    passages (a different number or name, as a reader could confuse), still citing the right source."""
    if not answer:
        return None
    pool = " ".join(passages)
    for pattern in (_NUMBER, _NAME):
        found = pattern.search(answer)
        if found is None:
            continue
        original = found.group(0)
        others = [o for o in {m.group(0) for m in pattern.finditer(pool)} - {original} if _swappable(o)]
        if pattern is _NUMBER and not others and original.isdigit():
            others = [str(int(original) + rng.choice((1, 2, 10)))]
        rng.shuffle(others)  # then the same number of words first: "Denver Broncos" -> "Carolina Panthers"
        others.sort(key=lambda o: abs(len(o.split()) - len(original.split())))
        for other in others:
            swapped = answer[: found.start()] + other + answer[found.end() :]
            if is_wrong(swapped, answers):
                return f"{swapped} [{cited}]"
    return None


def _swappable(candidate: str) -> bool:
    """A name or number that can stand in an answer: not a capitalised stop word ("His", "The")."""
    return not all(w.lower() in STOPWORDS for w in candidate.split())


def _wrong_citation(
    answer: str | None, passages: Sequence[str], answers: Sequence[str], rng: random.Random
) -> str | None:
    """``answer`` citing a source that does not hold any gold answer."""
    if not answer:
        return None
    elsewhere = [n for n, p in enumerate(passages, 1) if not holds(p, answers)]
    return f"{answer} [{rng.choice(elsewhere)}]" if elsewhere else None


def model_negatives(
    rows: Sequence[dict[str, Any]], generate: Callable[[list[Any]], str], *, limit: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``model_wrong`` pairs: the generator's own answers to the prompts of ``rows`` that are wrong.

    One prompt per question (the first row of each), at most ``limit`` prompts asked. An answer is
    wrong when the sources hold the answer and it has no word of it and no gold answer inside
    (:func:`is_wrong`), or when the sources lack it and the model answered anyway.
    """
    seen: set[str] = set()
    prompts = []
    for row in rows:
        key = prompt_key(row)
        if key not in seen and row["meta"].get("source") != "halueval":
            seen.add(key)
            prompts.append(row)
    random.Random(seed).shuffle(prompts)
    out = []
    for row in prompts[:limit]:
        meta = row["meta"]
        text = generate(row["prompt"]).strip()
        if not text or is_not_found(text):
            continue
        if meta["answerable"]:
            from rag_app.answer_match import best_over_truths, token_f1

            if best_over_truths(token_f1, strip_citations(text), meta["answers"]) > 0:
                continue
            if not is_wrong(text, meta["answers"]):
                continue
            chosen = f"{meta['answers'][0]} [{meta['cited']}]"
        else:
            chosen = NOT_FOUND
        if text != chosen:
            out.append(make_pair(row["prompt"], chosen, text, "model_wrong", meta))
    return out
