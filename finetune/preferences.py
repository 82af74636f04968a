"""Preference pairs for alignment: ``prompt`` (the app's own prompt with numbered sources),
``chosen`` and ``rejected`` (one assistant message each), and ``meta``.

What to prefer is what the app is judged by: the answer from the sources with the right ``[n]``
over an invented one, and the abstention sentence when the sources lack the answer. Four sources
feed one writer (:func:`write_preferences`):

* **contrastive pairs**, built automatically from grounded examples (:mod:`finetune.data`: SQuAD,
  an index plus questions, question/context/answer JSONL). Chosen is the grounded answer with its
  citation; rejected is a hard negative of one of :data:`RULE_NEGATIVES`:

  - ``distractor_span``: the sentence of a distractor passage closest to the question, cited;
  - ``swapped_fact``: the right answer with a number or a name swapped for another one;
  - ``wrong_citation``: the right answer citing a passage that does not hold it;
  - ``false_abstention``: the abstention sentence although the right passage is shown;
  - ``answered_unanswerable``: the sources lack the answer (chosen = the abstention sentence),
    rejected = a confident answer from a distractor;

  and ``model_wrong``: the generator's own answer to the same prompt when it is wrong (no word of
  a gold answer, or an answer where the sources lack one), see :func:`model_negatives`.
* **HaluEval QA** pairs (knowledge as source [1], right answer vs hallucinated answer).
* **human feedback** from :class:`rag_app.feedback.FeedbackStore`: a thumbs-down answer with a
  correction gives (correction over answer); a thumbs-up answer over a thumbs-down one to the
  same question.

Rows are deduplicated, capped per negative type (``max_per_type``, sampled with the seed) and
split by source document (a SQuAD article, a HaluEval knowledge passage, a feedback question):
no passage is in both train and validation. The data card reports the counts per type.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from finetune.config import RULE_NEGATIVES, PreferenceRecipe, TrainingError
from finetune.data import (
    CARD_NAME,
    Example,
    dedup_and_split,
    digest,
    file_sha256,
    index_examples,
    jsonl_examples,
    read_jsonl,
    show,
    squad_examples,
    write_jsonl,
)
from rag_app.documents import Hit
from rag_app.guard.text import STOPWORDS
from rag_app.prompting import NOT_FOUND, build_prompt, is_not_found, strip_citations

OTHER_TYPES = ("model_wrong", "halueval", "feedback_correction", "feedback_rating")
PAIR_TYPES = RULE_NEGATIVES + OTHER_TYPES

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


def _holds(passage: str, answers: Sequence[str]) -> bool:
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
                    rows.append(_pair(shown.messages, NOT_FOUND, made, "answered_unanswerable", meta))
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
                    rows.append(_pair(shown.messages, chosen, rejected, kind, meta))
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


def _pair(prompt: list[Any], chosen: str, rejected: str, kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "meta": {**meta, "type": kind},
    }


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
    elsewhere = [n for n, p in enumerate(passages, 1) if not _holds(p, answers)]
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
        key = _prompt_key(row)
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
            out.append(_pair(row["prompt"], chosen, text, "model_wrong", meta))
    return out


# -- HaluEval QA -------------------------------------------------------------------------------
def halueval_pairs(path: Path, pairs: tuple[int, int]) -> list[dict[str, Any]]:
    """One row per HaluEval QA pair in ``pairs`` (inclusive): the knowledge as source [1], the
    right answer (cited) over the hallucinated one (cited the same way, so the mark is no clue)."""
    first, last = pairs
    grouped: dict[int, dict[int, dict[str, Any]]] = {}
    for row in read_jsonl(path):
        pair = int(row["pair_id"])
        if first <= pair <= last:
            grouped.setdefault(pair, {})[int(row["label"])] = row
    out = []
    for pair, both in sorted(grouped.items()):
        if 0 not in both or 1 not in both:
            continue
        right, wrong = both[0], both[1]
        hit = Hit(0, str(right["context"]), "HaluEval", None, 0, len(str(right["context"])), 1.0)
        prompt = build_prompt(
            str(right["question"]), [hit], count_tokens=lambda t: len(t) // 4, budget_tokens=10**9
        )
        meta = {
            "source": "halueval",
            "group": f"halueval-{digest(str(right['context']))}",
            "pair_id": pair,
            "question": right["question"],
            "answers": [right["answer"]],
            "answerable": True,
            "cited": 1,
            "passages": [str(right["context"])],
        }
        chosen, rejected = f"{right['answer']} [1]", f"{wrong['answer']} [1]"
        if chosen != rejected:
            out.append(_pair(prompt.messages, chosen, rejected, "halueval", meta))
    return out


# -- human feedback ----------------------------------------------------------------------------
def feedback_pairs(data_dir: Path) -> list[dict[str, Any]]:
    """Pairs from the app's feedback store in ``data_dir`` (see module doc). The prompt is rebuilt
    from the sources the answer was given with (its citations, in number order)."""
    from rag_app.feedback import FeedbackRow, FeedbackStore

    store = FeedbackStore(data_dir)
    try:
        rows = store.rows()
    finally:
        store.close()

    def prompt_of(row: FeedbackRow) -> tuple[list[Any], list[str]]:
        citations = sorted(row.answer.get("citations") or [], key=lambda c: int(c["number"]))
        hits = [
            Hit(i, str(c["text"]), str(c["source"]), c.get("page"), 0, len(str(c["text"])), 1.0,
                tuple(c.get("heading_path") or ()))
            for i, c in enumerate(citations)
        ]  # fmt: skip
        prompt = build_prompt(row.question, hits, count_tokens=lambda t: len(t) // 4, budget_tokens=10**9)
        return prompt.messages, [h.text for h in hits]

    def meta(row: FeedbackRow, passages: list[str]) -> dict[str, Any]:
        return {
            "source": "feedback",
            "group": f"feedback-{digest(' '.join(row.question.lower().split()))}",
            "question": row.question,
            "answers": [row.correction] if row.correction else [],
            "answerable": not (row.correction and is_not_found(row.correction)),
            "cited": None,
            "passages": passages,
            "feedback_ids": [row.id],
        }

    out = []
    for row in rows:
        if row.rating == -1 and row.correction and row.correction.strip() != row.answer_text.strip():
            messages, passages = prompt_of(row)
            out.append(
                _pair(
                    messages,
                    row.correction.strip(),
                    row.answer_text,
                    "feedback_correction",
                    meta(row, passages),
                )
            )
    by_question: dict[tuple[str, str], list[FeedbackRow]] = {}
    for row in rows:
        by_question.setdefault((row.index_dir, " ".join(row.question.lower().split())), []).append(row)
    for same in by_question.values():
        ups = [r for r in same if r.rating == 1]
        downs = [r for r in same if r.rating == -1]
        for up in ups:
            messages, passages = prompt_of(up)
            for down in downs:
                if up.answer_text.strip() != down.answer_text.strip():
                    row_meta = {**meta(up, passages), "answers": [], "feedback_ids": [up.id, down.id]}
                    out.append(_pair(messages, up.answer_text, down.answer_text, "feedback_rating", row_meta))
    return out


# -- dedup, balance, split, card ---------------------------------------------------------------
def pair_key(row: dict[str, Any]) -> str:
    """The same prompt, chosen and rejected texts: one row."""
    return digest(json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True))


def pair_group(row: dict[str, Any]) -> str:
    """The source document of a row (a SQuAD article, a HaluEval passage, a feedback question)."""
    return str(row["meta"]["group"])


def check_pairs(rows: Sequence[dict[str, Any]], where: str) -> None:
    """Refuse rows a preference trainer would learn nothing (or nonsense) from, naming them."""
    problems = []
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("prompt", "chosen", "rejected") if not row.get(k)]
        if missing:
            problems.append(f"row {n}: no {', '.join(missing)}")
            continue
        prompt = row["prompt"]
        text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)
        if not text.strip():
            problems.append(f"row {n}: empty prompt")
        if _text(row["chosen"]).strip() == _text(row["rejected"]).strip():
            problems.append(f"row {n}: chosen and rejected are identical")
        if len(problems) >= 5:
            break
    if problems:
        raise TrainingError(f"{where}: {'; '.join(problems)} (fix or drop these rows; nothing was trained)")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return " ".join(str(m.get("content", "")) for m in value)


def balance(rows: list[dict[str, Any]], max_per_type: int | None, seed: int) -> list[dict[str, Any]]:
    """At most ``max_per_type`` rows of each negative type (a seeded sample), order kept."""
    if max_per_type is None:
        return rows
    rng = random.Random(seed)
    by_type: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_type.setdefault(row["meta"]["type"], []).append(i)
    keep: set[int] = set()
    for positions in by_type.values():
        keep.update(positions if len(positions) <= max_per_type else rng.sample(positions, max_per_type))
    return [row for i, row in enumerate(rows) if i in keep]


def build_pairs(
    recipe: PreferenceRecipe, settings: Any = None, generate: Callable[[list[Any]], str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every pair ``recipe`` asks for (before dedup and split) and the inputs it read (with hashes)."""
    rows: list[dict[str, Any]] = []
    inputs: list[Path] = []
    extra: dict[str, Any] = {}
    examples: list[Example] = []
    if recipe.squad is not None:
        examples += squad_examples(
            recipe.squad,
            articles=recipe.articles,
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        inputs += [recipe.squad / "passages.jsonl", recipe.squad / "qa.jsonl"]
    if recipe.jsonl is not None:
        examples += jsonl_examples(
            recipe.jsonl,
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        inputs.append(recipe.jsonl)
    if recipe.index is not None:
        if recipe.questions is None:
            raise TrainingError("pairs from an index need questions: a JSONL of {question, answer} rows")
        found, missed = index_examples(
            recipe.index,
            recipe.questions,
            settings=settings or _settings(),
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        examples += found
        extra["questions_without_a_chunk"] = missed
        inputs.append(recipe.questions)
    rule_rows = contrastive_pairs(examples, seed=recipe.seed, negatives=recipe.negatives)
    rows += rule_rows
    if recipe.model_negatives:
        ask = generate or _generator(recipe, settings)
        rows += model_negatives(rule_rows, ask, limit=recipe.model_negatives, seed=recipe.seed)
        extra["model_negatives_asked"] = min(recipe.model_negatives, len({_prompt_key(r) for r in rule_rows}))
    if recipe.halueval is not None:
        rows += halueval_pairs(recipe.halueval, recipe.halueval_pairs)
        inputs.append(recipe.halueval)
    if recipe.feedback is not None:
        rows += feedback_pairs(recipe.feedback)
    extra["inputs"] = {str(p): file_sha256(p) for p in inputs if Path(p).is_file()}
    return rows, extra


def _prompt_key(row: dict[str, Any]) -> str:
    return digest(json.dumps(row["prompt"]))


def write_preferences(
    recipe: PreferenceRecipe, settings: Any = None, generate: Callable[[list[Any]], str] | None = None
) -> dict[str, Any]:
    """Build, deduplicate, balance, split and write the pairs of ``recipe``; returns the data card.

    ``generate`` (messages -> answer text) answers the prompts for ``model_wrong`` pairs; by default
    the generator ``recipe.model`` (or the configured one) does.
    """
    rows, extra = build_pairs(recipe, settings, generate)
    if not rows:
        raise TrainingError(
            "no preference pairs could be built: give squad, jsonl, index, halueval or feedback"
        )
    built = Counter(r["meta"]["type"] for r in rows)
    unique, _, dropped = dedup_and_split(rows, 0.0, recipe.seed, key=pair_key, group=pair_group)
    kept = balance(unique, recipe.max_per_type, recipe.seed)
    train, validation = [], []
    for source in sorted({r["meta"]["source"] for r in kept}):  # each source held out in its own share
        part = [r for r in kept if r["meta"]["source"] == source]
        part_train, part_validation, _ = dedup_and_split(
            part, recipe.validation_share, recipe.seed, key=pair_key, group=pair_group
        )
        train += part_train
        validation += part_validation
    shuffle = random.Random(recipe.seed)  # so that the first rows (max_validation_rows) mix the types
    shuffle.shuffle(train)
    shuffle.shuffle(validation)
    check_pairs(train, "built pairs")
    recipe.out.mkdir(parents=True, exist_ok=True)
    files = {"train": recipe.out / "train.jsonl", "validation": recipe.out / "validation.jsonl"}
    write_jsonl(files["train"], train)
    write_jsonl(files["validation"], validation)
    card = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kind": "preference pairs",
        "config": recipe.model_dump(mode="json"),
        "inputs": extra.pop("inputs"),
        "rows": {
            "built": len(rows),
            "duplicates_dropped": dropped,
            "capped": len(unique) - len(kept),
            "train": len(train),
            "validation": len(validation),
        },
        "per_type": {
            kind: {
                "built": built.get(kind, 0),
                "train": sum(r["meta"]["type"] == kind for r in train),
                "validation": sum(r["meta"]["type"] == kind for r in validation),
            }
            for kind in PAIR_TYPES
            if built.get(kind)
        },
        "groups": {
            "train": len({pair_group(r) for r in train}),
            "validation": len({pair_group(r) for r in validation}),
            "shared": len({pair_group(r) for r in train} & {pair_group(r) for r in validation}),
        },
        "files": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in files.items()},
        "format": "prompt (chat messages with numbered sources), chosen / rejected (one assistant message)",
        "not_found": NOT_FOUND,
        **extra,
    }
    (recipe.out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def _settings() -> Any:
    from rag_app.settings import Settings

    return Settings.load()


def _generator(recipe: PreferenceRecipe, settings: Any) -> Callable[[list[Any]], str]:
    """Greedy answers of the configured generator (``recipe.model`` when set), short as the app's."""
    from rag_app.generation import create_generator

    base = settings or _settings()
    if recipe.model:
        base = base.model_copy(
            update={"generator": base.generator.model_copy(update={"model": recipe.model})}
        )
    generator = create_generator(base)

    def ask(messages: list[Any]) -> str:
        return generator.generate(messages, max_new_tokens=48, temperature=0.0).text

    return ask


def read_pairs(path: Path, limit: int | None = None, *, with_meta: bool = False) -> list[dict[str, Any]]:
    """Preference rows of a JSONL file, checked (:func:`check_pairs`): only the trainer's columns,
    or whole rows (``meta`` too) with ``with_meta``."""
    from finetune.data import read_rows

    rows = read_rows(path, limit)
    if not rows:
        raise TrainingError(f"{path} has no rows")
    check_pairs(rows, str(path))
    if with_meta:
        return rows
    return [trainer_columns(r) for r in rows]


def read_pair_splits(
    data: Any, *, with_meta: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train rows and the validation rows (none when the file is unset or absent) of ``data``
    (:class:`finetune.config.PreferenceData`)."""
    train = read_pairs(data.train, data.max_train_rows, with_meta=with_meta)
    validation: list[dict[str, Any]] = []
    if data.validation is not None and data.validation.is_file():
        validation = read_pairs(data.validation, data.max_validation_rows, with_meta=with_meta)
    return train, validation


def trainer_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The columns TRL's preference trainers read."""
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}


__all__ = [
    "PAIR_TYPES",
    "RULE_NEGATIVES",
    "balance",
    "build_pairs",
    "check_pairs",
    "contrastive_pairs",
    "feedback_pairs",
    "halueval_pairs",
    "is_wrong",
    "model_negatives",
    "read_pairs",
    "write_preferences",
]
