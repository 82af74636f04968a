"""Preference pairs from outside the grounded examples: HaluEval QA (right over hallucinated
answer) and the app's human feedback (a correction over the answer, thumbs-up over thumbs-down)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.data import digest, read_jsonl
from finetune.preference_rows import make_pair
from rag_app.documents import Hit
from rag_app.prompting import build_prompt, is_not_found


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
            out.append(make_pair(prompt.messages, chosen, rejected, "halueval", meta))
    return out


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
                make_pair(
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
                    out.append(
                        make_pair(messages, up.answer_text, down.answer_text, "feedback_rating", row_meta)
                    )
    return out
