"""Grounded training data, RAFT-style: a question, the passage that answers it and distractors.

Every row is a chat example in the exact prompt format the app uses at run time
(:func:`rag_app.prompting.build_prompt`: the system prompt, numbered sources, the question), and
its target is the answer followed by the number of the right source, ``"Denver Broncos [2]"``.
A share of rows leave the right passage out, and their target is the app's fixed
"not in the documents" sentence (:data:`rag_app.prompting.NOT_FOUND`), so the model learns to
abstain rather than to answer from the distractors (Zhang et al., 2024, "RAFT").

Three sources feed the same builder:

* :func:`squad_examples`: ``../shared/data/squad-dev`` (passages.jsonl + qa.jsonl), a range of
  articles; distractors are other paragraphs of the same article (hard negatives).
* :func:`jsonl_examples`: rows of ``question`` / ``context`` / ``answer`` (what eval's
  active-learning selection writes); an empty answer means "not in the documents".
* :func:`index_examples`: an index folder plus questions with answers; the right chunk is the
  best retrieved chunk that contains the answer, distractors are the other retrieved chunks.

:func:`write_dataset` deduplicates, splits train/validation by passage (no passage is in both),
and writes ``train.jsonl``, ``validation.jsonl`` and ``data_card.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import GroundedDataRecipe, TrainingError
from rag_app.documents import Hit
from rag_app.prompting import NOT_FOUND, build_prompt

CARD_NAME = "data_card.json"


@dataclass(frozen=True)
class Passage:
    """A passage that can be shown as a numbered source."""

    text: str
    source: str
    """What the prompt shows as the source's label (a file name, an article title)."""
    passage_id: str = ""


@dataclass
class Example:
    """One grounded question before it becomes a chat row."""

    question: str
    answer: str | None
    """The gold answer; ``None`` when the shown passages do not contain it."""
    oracle: Passage | None
    """The passage with the answer (``None``: an unanswerable row)."""
    distractors: list[Passage]
    meta: dict[str, Any] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    """All gold answers (SQuAD has up to three), for scoring."""


# -- rows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shown:
    """An example as the model sees it: the prompt and the passages behind each source number."""

    messages: list[Any]
    passages: list[Passage]
    """In source-number order: ``passages[n - 1]`` is source ``[n]``."""
    cited: int | None
    """The number of the right source (``None``: the sources lack the answer)."""


def show(example: Example, rng: random.Random) -> Shown:
    """The prompt for ``example``: the right passage at a random position among the distractors,
    in the exact format the app uses at run time."""
    passages = list(example.distractors)
    if example.oracle is not None:
        passages.insert(rng.randrange(len(passages) + 1), example.oracle)
    hits = [_hit(p, i) for i, p in enumerate(passages)]
    prompt = build_prompt(
        example.question, hits, count_tokens=lambda text: len(text) // 4, budget_tokens=10**9
    )
    shown = [passages[h.chunk_id] for h in prompt.sources]
    cited = None
    if example.oracle is not None and example.answer:
        cited = shown.index(example.oracle) + 1
    return Shown(prompt.messages, shown, cited)


def to_row(example: Example, rng: random.Random) -> dict[str, Any]:
    """The chat row: ``prompt`` (system + user messages), ``completion`` (the target), ``meta``.

    The target is the answer citing the right passage's number as the prompt shows it, or the
    "not in the documents" sentence.
    """
    shown = show(example, rng)
    target = f"{example.answer} [{shown.cited}]" if shown.cited is not None else NOT_FOUND
    meta = dict(example.meta)
    meta.update(
        answerable=shown.cited is not None,
        cited=shown.cited,
        answers=example.answers or ([example.answer] if example.answer else []),
        passage_ids=[hit_source_id(p) for p in shown.passages],
    )
    return {
        "prompt": shown.messages,
        "completion": [{"role": "assistant", "content": target}],
        "meta": meta,
    }


def hit_source_id(passage: Passage) -> str:
    return passage.passage_id or digest(passage.text)


def _hit(passage: Passage, position: int) -> Hit:
    return Hit(position, passage.text, passage.source, None, 0, len(passage.text), 1.0)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _answerable_split(rng: random.Random, share: float) -> bool:
    return rng.random() >= share


def _drop_oracle(example: Example, pool: Sequence[Passage], rng: random.Random) -> Example:
    """The unanswerable twin: the right passage replaced by one more distractor."""
    used = {p.text for p in example.distractors}
    if example.oracle is not None:
        used.add(example.oracle.text)
    spare = [p for p in pool if p.text not in used]
    extra = [rng.choice(spare)] if spare else []
    return Example(example.question, None, None, example.distractors + extra, dict(example.meta), [])


# -- sources ------------------------------------------------------------------------------------
def squad_examples(
    folder: Path,
    *,
    articles: tuple[int, int] | None = None,
    distractors: int = 2,
    unanswerable_share: float = 0.2,
    seed: int = 0,
) -> list[Example]:
    """Examples from a SQuAD-style folder: ``passages.jsonl`` and ``qa.jsonl``.

    ``articles`` is a 1-based inclusive range over the article titles in file order.
    Distractors are other paragraphs of the same article, so telling them apart takes reading.
    """
    passages = list(read_jsonl(folder / "passages.jsonl"))
    titles = list(dict.fromkeys(p["title"] for p in passages))
    first, last = articles or (1, len(titles))
    if not 1 <= first <= last <= len(titles):
        raise TrainingError(f"articles must be a range within 1..{len(titles)}, got {first}..{last}")
    chosen = set(titles[first - 1 : last])
    by_id = {p["_id"]: Passage(p["text"], p["title"], p["_id"]) for p in passages if p["title"] in chosen}
    by_article: dict[str, list[Passage]] = {}
    for passage in by_id.values():
        by_article.setdefault(passage.source, []).append(passage)
    rng = random.Random(seed)
    examples = []
    for row in read_jsonl(folder / "qa.jsonl"):
        oracle = by_id.get(row["context_id"])
        if oracle is None:
            continue
        pool = [p for p in by_article[oracle.source] if p is not oracle]
        picked = rng.sample(pool, min(distractors, len(pool)))
        answers = list(dict.fromkeys(row["answers"]))
        meta = {"id": row["id"], "article": oracle.source, "context_id": oracle.passage_id}
        example = Example(row["question"], answers[0], oracle, picked, meta, answers)
        if not _answerable_split(rng, unanswerable_share):
            example = _drop_oracle(example, pool, rng)
            example.answers = []
        examples.append(example)
    return examples


def jsonl_examples(
    path: Path, *, distractors: int = 2, unanswerable_share: float = 0.0, seed: int = 0
) -> list[Example]:
    """Examples from JSONL rows ``{"question", "context", "answer"}`` (``distractors`` and
    ``source`` optional). An empty or null ``answer`` means the context does not answer it.

    Rows without their own ``distractors`` get contexts of other rows.
    """
    rows = list(read_jsonl(path))
    for i, row in enumerate(rows, 1):
        missing = [key for key in ("question", "context") if not row.get(key)]
        if missing:
            raise TrainingError(
                f"{path} row {i}: missing {', '.join(missing)} (need question, context, answer)"
            )
    pool = [Passage(str(r["context"]), str(r.get("source") or path.stem)) for r in rows]
    unique_pool = list({p.text: p for p in pool}.values())
    rng = random.Random(seed)
    examples = []
    for row, context in zip(rows, pool, strict=True):
        given = [Passage(str(t), context.source) for t in row.get("distractors") or []]
        others = [p for p in unique_pool if p.text != context.text]
        picked = given or rng.sample(others, min(distractors, len(others)))
        answer = str(row["answer"]).strip() if row.get("answer") else None
        meta: dict[str, Any] = {k: row[k] for k in ("id", "source") if k in row}
        if answer is None:
            examples.append(Example(str(row["question"]), None, None, [context, *picked], meta, []))
            continue
        example = Example(str(row["question"]), answer, context, picked, meta, [answer])
        if not _answerable_split(rng, unanswerable_share):
            example = _drop_oracle(example, unique_pool, rng)
        examples.append(example)
    return examples


def index_examples(
    index: Path,
    questions: Path,
    *,
    settings: Any,
    distractors: int = 2,
    unanswerable_share: float = 0.2,
    seed: int = 0,
) -> tuple[list[Example], int]:
    """Examples grounded in an index: for each ``{"question", "answer"}`` row, retrieve
    ``distractors + 5`` chunks; the best one containing the answer is the right passage, the
    best ones without it are distractors (hard negatives, as retrieval would return).

    Returns the examples and how many questions had no chunk containing their answer (dropped).
    """
    from rag_app.rag import RAG

    rows = list(read_jsonl(questions))
    rng = random.Random(seed)
    examples, missed = [], 0
    rag = RAG.open(index, settings)
    try:
        for row in rows:
            question, answer = str(row.get("question") or ""), str(row.get("answer") or "").strip()
            if not question or not answer:
                raise TrainingError(f"{questions}: every row needs a question and an answer, got {row}")
            hits = rag.search(question, k=distractors + 5)
            needle = " ".join(answer.lower().split())
            inside = [h for h in hits if needle in " ".join(h.text.lower().split())]
            if not inside:
                missed += 1
                continue
            oracle = Passage(inside[0].text, inside[0].source.rsplit("/", 1)[-1], str(inside[0].chunk_id))
            pool = [
                Passage(h.text, h.source.rsplit("/", 1)[-1], str(h.chunk_id)) for h in hits if h not in inside
            ]
            meta = {"chunk_id": inside[0].chunk_id, "source": inside[0].source}
            example = Example(question, answer, oracle, pool[:distractors], meta, [answer])
            if not _answerable_split(rng, unanswerable_share):
                example = _drop_oracle(example, pool, rng)
            examples.append(example)
    finally:
        rag.close()
    return examples, missed


# -- dedup, split, card -------------------------------------------------------------------------
def dedup_key(row: dict[str, Any]) -> str:
    """Same question (case and spacing ignored) over the same passages, same target: one row."""
    question = " ".join(row["prompt"][-1]["content"].rsplit("Question:", 1)[-1].lower().split())
    passages = ",".join(sorted(row["meta"]["passage_ids"]))
    return digest(f"{question}\n{passages}\n{row['completion'][0]['content']}")


def split_group(row: dict[str, Any]) -> str:
    """Rows about the same passage stay together: its id (SQuAD ``context_id``, an index chunk id),
    else the first passage shown."""
    meta = row["meta"]
    return str(meta.get("context_id") or meta.get("chunk_id") or meta["passage_ids"][0])


def dedup_and_split(
    rows: Iterable[dict[str, Any]],
    validation_share: float,
    seed: int,
    *,
    key: Callable[[dict[str, Any]], str] = dedup_key,
    group: Callable[[dict[str, Any]], str] = split_group,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Drop rows with the same ``key``; assign whole ``group``s to validation by a seeded hash.

    Returns train rows, validation rows and the number of duplicates dropped.
    """
    seen: set[str] = set()
    unique, dropped = [], 0
    for row in rows:
        k = key(row)
        if k in seen:
            dropped += 1
            continue
        seen.add(k)
        unique.append(row)
    groups = sorted({group(r) for r in unique}, key=lambda g: digest(f"{seed}:{g}"))
    n_val = round(len(groups) * validation_share)
    if validation_share > 0 and len(groups) > 1:
        n_val = max(1, min(n_val, len(groups) - 1))
    held = set(groups[:n_val])
    train = [r for r in unique if group(r) not in held]
    validation = [r for r in unique if group(r) in held]
    return train, validation, dropped


def write_dataset(recipe: GroundedDataRecipe, settings: Any = None) -> dict[str, Any]:
    """Build, deduplicate, split and write the rows of ``recipe``; returns the data card."""
    extra: dict[str, Any] = {}
    if recipe.source == "squad":
        examples = squad_examples(
            recipe.path,
            articles=recipe.articles,
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        inputs = [recipe.path / "passages.jsonl", recipe.path / "qa.jsonl"]
    elif recipe.source == "jsonl":
        examples = jsonl_examples(
            recipe.path,
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        inputs = [recipe.path]
    else:
        if recipe.questions is None:
            raise TrainingError(
                "source 'index' needs questions: a JSONL of {question, answer} rows (--questions)"
            )
        if settings is None:
            from rag_app.settings import Settings

            settings = Settings.load()
        examples, missed = index_examples(
            recipe.path,
            recipe.questions,
            settings=settings,
            distractors=recipe.distractors,
            unanswerable_share=recipe.unanswerable_share,
            seed=recipe.seed,
        )
        extra["questions_without_a_chunk"] = missed
        inputs = [recipe.questions, *sorted(recipe.path.glob("*.sqlite"))]
    if not examples:
        raise TrainingError(f"no examples could be built from {recipe.source} {recipe.path}")
    rng = random.Random(recipe.seed)
    if recipe.max_rows is not None and len(examples) > recipe.max_rows:
        examples = rng.sample(examples, recipe.max_rows)
    rows = [to_row(e, rng) for e in examples]
    train, validation, dropped = dedup_and_split(rows, recipe.validation_share, recipe.seed)
    recipe.out.mkdir(parents=True, exist_ok=True)
    files = {"train": recipe.out / "train.jsonl", "validation": recipe.out / "validation.jsonl"}
    for name, part in (("train", train), ("validation", validation)):
        write_jsonl(files[name], part)
    card = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": recipe.source,
        "inputs": {str(p): file_sha256(p) for p in inputs if Path(p).is_file()},
        "config": recipe.model_dump(mode="json"),
        "rows": {
            "built": len(rows),
            "duplicates_dropped": dropped,
            "train": len(train),
            "validation": len(validation),
            "train_unanswerable": sum(not r["meta"]["answerable"] for r in train),
            "validation_unanswerable": sum(not r["meta"]["answerable"] for r in validation),
        },
        "files": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in files.items()},
        "format": "chat prompt/completion rows; target = answer + ' [n]' or the NOT_FOUND sentence",
        "not_found": NOT_FOUND,
        **extra,
    }
    (recipe.out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def read_rows(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file (at most ``limit``)."""
    rows = []
    for row in read_jsonl(path):
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise TrainingError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingError(f"{path} line {n}: not JSON ({exc.msg})") from None


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
