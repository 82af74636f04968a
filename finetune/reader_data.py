"""Training rows for the packaged reader adapter: short cited answers, abstentions, and yes/no checks.

The rows come from HaluEval QA (``../shared/data/halueval-qa``: HotpotQA passages, a question, its
right answer and a hallucinated one), pairs ``0 .. pair_limit - 1`` only, so they share nothing with
the SQuAD articles the answers are measured on. Every row uses the app's own prompt
(:func:`rag_app.prompting.build_prompt`), four numbered sources: the passage with the answer, its
sibling passage, and passages of other questions.

Three kinds of rows, in the mix :class:`ReaderMix` sets:

* **answer**: target ``"<answer> [n]"``, the answer as the passage words it;
* **abstain**: the passages holding the answer are replaced by others; target the
  :data:`~rag_app.prompting.NOT_FOUND` sentence;
* **verify**: the conversation goes on after an answer with
  :data:`~rag_app.prompting.VERIFY_QUESTION`; target ``Yes`` after the right answer with its right
  citation, ``No`` after a wrong one: a span of a distractor of the same kind (a number for a
  number, a name for a name), the right answer with a wrong citation, the hallucinated answer of
  HaluEval when it is short, or any answer when the sources lack it.

These teach the 0.5B model what the app needs and what its base version does poorly: to answer in a
few words instead of echoing the question, to cite, to abstain, and to judge an answer (the base
model's P(Yes) barely moves between right and wrong answers).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import TrainingError
from rag_app.documents import Hit
from rag_app.not_found import NOT_FOUND
from rag_app.prompting import build_prompt, verify_messages

_PARAGRAPH_JOIN = re.compile(r"(?<=[a-z0-9)\]\"'][.!?])(?=[A-Z])")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_NAME = re.compile(r"\b[A-Z][\w'’.-]+(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’.-]+)*")
_WORDS = re.compile(r"[A-Za-z][\w'’-]*")


@dataclass(frozen=True)
class ReaderMix:
    """How many rows of each kind to build."""

    answer: int = 1200
    abstain: int = 300
    verify_yes: int = 300
    verify_no: int = 300
    sources: int = 4
    """Numbered sources per prompt."""


@dataclass(frozen=True)
class QAItem:
    pair_id: int
    question: str
    answer: str
    hallucinated: str
    paragraphs: tuple[str, ...]
    gold: int
    """Index of the paragraph that holds the answer."""


def read_halueval_qa(path: Path, pair_limit: int = 5000) -> list[QAItem]:
    """The usable pairs below ``pair_limit``: the right answer occurs in one of the passages."""
    if not path.is_file():
        raise TrainingError(f"HaluEval QA file not found: {path} (see ../shared/data/README.md)")
    right: dict[int, dict[str, Any]] = {}
    wrong: dict[int, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            pair = int(row["pair_id"])
            if pair >= pair_limit:
                continue
            if int(row["label"]) == 0:
                right[pair] = row
            else:
                wrong[pair] = str(row["answer"])
    items = []
    for pair, row in sorted(right.items()):
        answer = " ".join(str(row["answer"]).split())
        if answer.lower() in {"yes", "no"} or len(answer) < 2:
            continue  # comparison questions: no span to cite
        paragraphs = tuple(p.strip() for p in _PARAGRAPH_JOIN.split(str(row["context"])) if p.strip())
        gold = next((i for i, p in enumerate(paragraphs) if answer.lower() in p.lower()), None)
        if gold is None:
            continue
        items.append(
            QAItem(pair, str(row["question"]).strip(), answer, wrong.get(pair, ""), paragraphs, gold)
        )
    return items


def build_rows(items: Sequence[QAItem], mix: ReaderMix, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of every kind, shuffled; each carries ``meta.kind`` and ``meta.pair_id``."""
    if len(items) < 10:
        raise TrainingError(f"need at least 10 usable QA pairs, got {len(items)}")
    rng = random.Random(seed)
    pool = [(item.pair_id, p) for item in items for p in item.paragraphs]
    rows: list[dict[str, Any]] = []
    order = list(items)
    rng.shuffle(order)
    cycle = _cycle(order)
    for kind, count in (
        ("answer", mix.answer),
        ("abstain", mix.abstain),
        ("verify_yes", mix.verify_yes),
        ("verify_no", mix.verify_no),
    ):
        for _ in range(count):
            rows.append(_row(kind, next(cycle), pool, mix.sources, rng))
    rng.shuffle(rows)
    return rows


def _cycle(items: Sequence[QAItem]) -> Iterator[QAItem]:
    while True:
        yield from items


def _sources(
    item: QAItem, pool: Sequence[tuple[int, str]], n: int, rng: random.Random, *, with_answer: bool
) -> tuple[list[str], int | None]:
    """``n`` source texts and the position of the one with the answer (``None``: left out)."""
    own = [p for i, p in enumerate(item.paragraphs) if i != item.gold]
    if not with_answer:  # the sources must not hold the answer anywhere
        own = [p for p in own if item.answer.lower() not in p.lower()]
    chosen = own[:1]
    while len(chosen) < n - (1 if with_answer else 0):
        pair, text = rng.choice(pool)
        if pair != item.pair_id and text not in chosen and item.answer.lower() not in text.lower():
            chosen.append(text)
    rng.shuffle(chosen)
    if not with_answer:
        return chosen, None
    # retrieval puts the right passage first more often than not; the model should still read all
    position = 0 if rng.random() < 0.5 else rng.randrange(len(chosen) + 1)
    chosen.insert(position, item.paragraphs[item.gold])
    return chosen, position


def _prompt(question: str, texts: Sequence[str]) -> Any:
    hits = [Hit(i, text, f"halueval/{i}", None, 0, len(text), 1.0) for i, text in enumerate(texts)]
    return build_prompt(question, hits, count_tokens=lambda t: len(t) // 4, budget_tokens=10**9)


def _row(
    kind: str, item: QAItem, pool: Sequence[tuple[int, str]], n: int, rng: random.Random
) -> dict[str, Any]:
    with_answer = kind != "abstain" and not (kind == "verify_no" and rng.random() < 0.25)
    texts, position = _sources(item, pool, n, rng, with_answer=with_answer)
    prompt = _prompt(item.question, texts)
    right = f"{item.answer} [{position + 1}]" if position is not None else None
    meta: dict[str, Any] = {"kind": kind, "pair_id": item.pair_id, "answers": [item.answer]}
    if kind == "answer":
        assert right is not None
        return _chat(prompt.messages, right, meta)
    if kind == "abstain":
        return _chat(prompt.messages, NOT_FOUND, meta)
    if kind == "verify_yes":
        assert right is not None
        return _chat(verify_messages(prompt, right), "Yes", meta)
    wrong, how = _wrong_answer(item, texts, position, rng)
    meta["negative"] = how
    return _chat(verify_messages(prompt, wrong), "No", meta)


def _wrong_answer(
    item: QAItem, texts: Sequence[str], position: int | None, rng: random.Random
) -> tuple[str, str]:
    """A plausible wrong answer with a citation, and what kind of negative it is."""
    others = [i for i in range(len(texts)) if i != position]
    if position is not None and rng.random() < 0.2 and others:
        return f"{item.answer} [{rng.choice(others) + 1}]", "wrong citation"
    if position is not None and rng.random() < 0.5:
        # the commonest real error: another name or number of the right passage
        span = _similar_span(item.answer, texts[position], rng, avoid=item.answer)
        if span and span.lower() not in item.answer.lower() and item.answer.lower() not in span.lower():
            return f"{span} [{position + 1}]", "same-passage span"
    short_hallucination = 0 < len(item.hallucinated.split()) <= 6
    if position is not None and short_hallucination and rng.random() < 0.3:
        return f"{item.hallucinated.rstrip('.')} [{position + 1}]", "halueval hallucination"
    source = rng.choice(others) if others else 0
    span = _similar_span(item.answer, texts[source], rng)
    if position is None:
        return f"{span} [{source + 1}]", "sources lack the answer"
    return f"{span} [{source + 1}]", "distractor span"


def _similar_span(answer: str, text: str, rng: random.Random, avoid: str = "") -> str:
    """A span of ``text`` of the same kind as ``answer``: a number, a name, or a few words."""
    bad = avoid.lower()
    if _NUMBER.search(answer):
        numbers = [m.group().rstrip(".,") for m in _NUMBER.finditer(text)]
        numbers = [n for n in numbers if not bad or (n.lower() not in bad and bad not in n.lower())]
        if numbers:
            return rng.choice(numbers)
    if answer[:1].isupper():
        names = [m.group() for m in _NAME.finditer(text) if m.start() > 0 and m.group() != answer]
        names = [n for n in names if not bad or (n.lower() not in bad and bad not in n.lower())]
        if names:
            return rng.choice(names)
    words = _WORDS.findall(text)
    if not words:
        return text[:20]
    size = min(len(words), max(1, len(answer.split())))
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start : start + size])


def _chat(messages: list[Any], target: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": messages, "completion": [{"role": "assistant", "content": target}], "meta": meta}


def write_reader_dataset(
    path: Path,
    out: Path,
    *,
    mix: ReaderMix = ReaderMix(),
    validation_mix: ReaderMix = ReaderMix(120, 30, 30, 30),
    train_pairs: tuple[int, int] = (0, 4000),
    validation_pairs: tuple[int, int] = (4000, 5000),
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``train.jsonl`` and ``validation.jsonl`` (split by pair id) and a data card."""
    items = read_halueval_qa(path, pair_limit=max(train_pairs[1], validation_pairs[1]))
    train_items = [i for i in items if train_pairs[0] <= i.pair_id < train_pairs[1]]
    val_items = [i for i in items if validation_pairs[0] <= i.pair_id < validation_pairs[1]]
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for name, part, part_mix, part_seed in (
        ("train", train_items, mix, seed),
        ("validation", val_items, validation_mix, seed + 1),
    ):
        rows = build_rows(part, part_mix, part_seed)
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        kinds: dict[str, int] = {}
        for row in rows:
            key = row["meta"]["kind"] + (f" ({row['meta']['negative']})" if "negative" in row["meta"] else "")
            kinds[key] = kinds.get(key, 0) + 1
        counts[name] = dict(sorted(kinds.items()))
    card = {
        "source": str(path),
        "pairs": {"train": list(train_pairs), "validation": list(validation_pairs)},
        "usable_pairs": {"train": len(train_items), "validation": len(val_items)},
        "rows": counts,
        "seed": seed,
        "not_found": NOT_FOUND,
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
