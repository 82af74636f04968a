"""The loop's SFT rows: the failures to fix, the current model's right answers replayed, and a
capped share of abstentions, each only where it is the right lesson.

Every row is a chat row in the app's prompt format (:mod:`finetune.data`), marked in
``meta.origin`` and counted in the data card (``sft-data/data_card.json``, and the iteration
record's ``sft_rows``):

* ``fix``: a selected failure (or a person's label) with the gold answer as the target, its passage
  shown among distractors. Nothing is left out of its sources: an answerable failure never gets
  the abstention sentence as its target.
* ``anchor``: rehearsal against drift (the ``replay_share`` rows). A pool question the current
  model answered right (:func:`right_answers`) becomes a row over the passages it was shown, in the
  same order, with its own answer and citation as the target; at most ``replay_share`` of the fix
  rows, as many as exist. A question kept as an anchor is not also a fix row (its gold target
  would compete with the model's own right answer).
* ``not_found``: the abstention sentence, only where the sources really lack the answer: a question
  a person labelled unanswerable (``labelled_unanswerable``), or a right-answered pool question that
  is no fix row (an anchor's, or one not selected) shown without every passage that holds a gold
  answer (``removed_passage``); together at most ``max_not_found_share`` of all rows, people's
  labels first.

Why (bench/README.md, "Loop"): the earlier recipe left the passage out of 20 % of the failure rows
(``unanswerable_share``), so 17 of 109 rows had the same 11-token abstention sentence as target
against answers like "seven [1]"; in about 20 steps that sentence dominated the per-token loss,
every candidate abstained far more than the base, and nothing anchored what it already did right.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rag_app.errors import ConfigError

RIGHT_F1 = 0.8
"""A pool answer is right with SQuAD F1 at least this against a gold answer, or a gold answer inside
it (``eval.calibrate``'s "right" for the withheld-answer error)."""
_CITATION = re.compile(r"\[(\d{1,3})\]")
DISTRACTORS = 2
"""Distractors shown with a fix row's passage (the loop's rows have always had 2)."""


def right_answers(results: Iterable[Any], samples: Mapping[str, Any]) -> list[Any]:
    """The pool results (:class:`eval.types.SampleResult`, first replicate) the model got right:
    answered, not an abstention, F1 >= :data:`RIGHT_F1` or a gold answer inside, and its first
    citation names a shown passage that holds a gold answer."""
    from rag_app.answer_match import best_over_truths, contains_truth, token_f1
    from rag_app.prompting import cited_numbers, is_not_found, strip_citations

    right = []
    for result in results:
        sample = samples.get(result.sample_id)
        if result.replicate or result.error or result.abstained or sample is None or not sample.answers:
            continue
        if is_not_found(result.answer):
            continue
        clean = strip_citations(result.answer)
        truths = list(sample.answers)
        if best_over_truths(token_f1, clean, truths) < RIGHT_F1 and not contains_truth(clean, truths):
            continue
        cited = next(iter(cited_numbers(result.answer)), None)
        passage = next((p for p in result.passages if p.number == cited), None)
        if passage is not None and contains_truth(passage.text, truths):
            right.append(result)
    return right


def _row(question: str, passages: Sequence[Any], target: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A chat row showing ``passages`` (``eval.types.Passage``) in their order, as sources 1..n."""
    from finetune.data import Example, Passage, hit_source_id, show

    shown = [Passage(p.text, p.source) for p in passages]
    prompt = show(Example(question, None, None, shown), random.Random(0))  # no passage is inserted
    meta = {**meta, "passage_ids": [hit_source_id(p) for p in shown]}
    return {"prompt": prompt.messages, "completion": [{"role": "assistant", "content": target}], "meta": meta}


def replay_row(result: Any, sample: Any) -> dict[str, Any]:
    """An anchor row: the prompt the model was shown (its passages in their order), its own answer
    as the target, word for word (citations renumbered only if the shown numbers had gaps)."""
    from rag_app.prompting import cited_numbers

    passages = sorted(result.passages, key=lambda p: p.number)
    place = {p.number: i for i, p in enumerate(passages, 1)}
    target = _CITATION.sub(lambda m: f"[{place.get(int(m.group(1)), m.group(1))}]", result.answer.strip())
    meta = {
        "id": result.sample_id, "origin": "anchor", "answerable": True,
        "cited": place[cited_numbers(result.answer)[0]], "answers": list(sample.answers),
        "app_answer": result.answer,
    }  # fmt: skip
    return _row(result.question, passages, target, meta)


def removed_passage_row(result: Any, sample: Any) -> dict[str, Any] | None:
    """The passages ``result`` was shown less every one that holds a gold answer (or is the
    reference passage), target: the abstention sentence; ``None`` when no passage is left."""
    from rag_app.answer_match import contains_truth
    from rag_app.prompting import NOT_FOUND

    references = [" ".join(c.split()) for c in sample.contexts]

    def holds(text: str) -> bool:
        flat = " ".join(text.split())
        return contains_truth(text, sample.answers) or any(flat in r or r in flat for r in references)

    left = [p for p in sorted(result.passages, key=lambda p: p.number) if not holds(p.text)]
    if not left:
        return None
    meta = {
        "id": result.sample_id, "origin": "not_found", "kind": "removed_passage", "answerable": False,
        "cited": None, "answers": [],
    }  # fmt: skip
    return _row(result.question, left, NOT_FOUND, meta)


def not_found_cap(others: int, share: float) -> int:
    """The most abstention rows beside ``others`` rows so that they are at most ``share`` of all."""
    return math.floor(share * others / (1.0 - share) + 1e-9) if share > 0 else 0


def loop_sft_rows(
    failures: Path,
    pool_results: Sequence[Any],
    pool_samples: Mapping[str, Any],
    *,
    replay_share: float,
    max_not_found_share: float,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows (fix, anchor, not_found; duplicates dropped) and their counts (see the module doc)."""
    from finetune.data import jsonl_examples, to_row

    rng = random.Random(seed)
    built = [to_row(e, rng) for e in jsonl_examples(failures, distractors=DISTRACTORS, seed=seed)]
    for row in built:
        answerable = row["meta"]["answerable"]
        row["meta"].update(origin="fix" if answerable else "not_found")
        if not answerable:
            row["meta"]["kind"] = "labelled_unanswerable"
    fixes = [r for r in built if r["meta"]["answerable"]]
    labelled_none = [r for r in built if not r["meta"]["answerable"]]

    right = right_answers(pool_results, pool_samples)
    random.Random(seed).shuffle(right)
    replayed: list[Any] = []
    for result in right:  # each replayed question leaves the fix rows: count what would remain
        ids = {r.sample_id for r in [*replayed, result]}
        remaining = sum(str(r["meta"].get("id")) not in ids for r in fixes)
        if len(replayed) + 1 <= replay_share * remaining:
            replayed.append(result)
    replayed_ids = {r.sample_id for r in replayed}
    fixes = [r for r in fixes if str(r["meta"].get("id")) not in replayed_ids]
    anchors = [replay_row(r, pool_samples[r.sample_id]) for r in replayed]

    seen: set[str] = set()
    others = _unique([*fixes, *anchors], seen)
    fix_ids = {str(r["meta"].get("id")) for r in others if r["meta"]["origin"] == "fix"}
    twins = [removed_passage_row(r, pool_samples[r.sample_id]) for r in replayed]
    twins += [  # other right answers that are not fix rows either
        removed_passage_row(r, pool_samples[r.sample_id])
        for r in right
        if r.sample_id not in replayed_ids and r.sample_id not in fix_ids
    ]
    candidates = _unique([*labelled_none, *(t for t in twins if t is not None)], seen)
    cap = not_found_cap(len(others), max_not_found_share)
    rows = others + candidates[:cap]
    kinds = Counter(r["meta"].get("kind") for r in rows if r["meta"]["origin"] == "not_found")
    counts = {
        "rows": len(rows),
        "fix": sum(r["meta"]["origin"] == "fix" for r in rows),
        "anchor": sum(r["meta"]["origin"] == "anchor" for r in rows),
        "right_pool_answers": len(right),
        "not_found": sum(kinds.values()),
        "not_found_labelled_unanswerable": kinds.get("labelled_unanswerable", 0),
        "not_found_removed_passage": kinds.get("removed_passage", 0),
        "not_found_cap": cap,
        "not_found_left_out": len(candidates) - min(cap, len(candidates)),
    }
    return rows, counts


def _unique(rows: Iterable[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """``rows`` without those whose :func:`finetune.data.dedup_key` is in ``seen`` (updated)."""
    from finetune.data import dedup_key

    out = []
    for row in rows:
        key = dedup_key(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def write_loop_sft(
    failures: Path,
    out: Path,
    pool_results: Sequence[Any],
    pool_samples: Mapping[str, Any],
    *,
    replay_share: float,
    max_not_found_share: float,
    seed: int,
) -> dict[str, Any]:
    """``out/train.jsonl`` (every row: the loop trains without a validation split) and
    ``out/data_card.json``; returns the card."""
    from finetune.data import CARD_NAME, file_sha256, write_jsonl
    from rag_app.prompting import NOT_FOUND

    rows, counts = loop_sft_rows(
        failures, pool_results, pool_samples,
        replay_share=replay_share, max_not_found_share=max_not_found_share, seed=seed,
    )  # fmt: skip
    if not rows:
        raise ConfigError(
            f"{failures}: no SFT rows left (only unanswerable labels, and max_not_found_share "
            f"{max_not_found_share} allows none without answerable rows): widen the pool"
        )
    out.mkdir(parents=True, exist_ok=True)
    train = out / "train.jsonl"
    write_jsonl(train, rows)
    card = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": "loop",
        "inputs": {str(failures): file_sha256(failures)},
        "config": {
            "replay_share": replay_share,
            "max_not_found_share": max_not_found_share,
            "right_f1": RIGHT_F1,
            "distractors": DISTRACTORS,
            "seed": seed,
        },
        "rows": counts,
        "files": {"train": {"path": str(train), "sha256": file_sha256(train)}},
        "format": "chat prompt/completion rows; meta.origin fix | anchor | not_found (see eval.loop_data)",
        "not_found": NOT_FOUND,
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
