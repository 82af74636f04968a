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

The parts live in their own modules, and their public names are importable from here as well:
:mod:`finetune.preference_negatives` (what counts as wrong, the rule and model negatives),
:mod:`finetune.preference_sources` (HaluEval, feedback) and :mod:`finetune.preference_rows` (the
row, its checks and caps, reading the files back).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune.config import RULE_NEGATIVES, PreferenceRecipe, TrainingError
from finetune.data import (
    CARD_NAME,
    Example,
    dedup_and_split,
    file_sha256,
    index_examples,
    jsonl_examples,
    squad_examples,
    write_jsonl,
)
from finetune.preference_negatives import contrastive_pairs, is_wrong, model_negatives, normalize
from finetune.preference_rows import (
    balance,
    check_pairs,
    pair_group,
    pair_key,
    prompt_key,
    read_pair_splits,
    read_pairs,
    trainer_columns,
)
from finetune.preference_sources import feedback_pairs, halueval_pairs
from rag_app.prompting import NOT_FOUND

OTHER_TYPES = ("model_wrong", "halueval", "feedback_correction", "feedback_rating")
PAIR_TYPES = RULE_NEGATIVES + OTHER_TYPES


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
        extra["model_negatives_asked"] = min(recipe.model_negatives, len({prompt_key(r) for r in rule_rows}))
    if recipe.halueval is not None:
        rows += halueval_pairs(recipe.halueval, recipe.halueval_pairs)
        inputs.append(recipe.halueval)
    if recipe.feedback is not None:
        rows += feedback_pairs(recipe.feedback)
    extra["inputs"] = {str(p): file_sha256(p) for p in inputs if Path(p).is_file()}
    return rows, extra


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
    "normalize",
    "pair_group",
    "pair_key",
    "read_pair_splits",
    "read_pairs",
    "trainer_columns",
    "write_preferences",
]
