"""Readers for the labelled data the guard learns from and is measured on (the ``--data`` folder).

Every reader returns :class:`Example` rows: a claim, the passages it should be grounded in, extra
context, and whether it is supported. Rows are split by their ``group`` (the HaluEval ``pair_id``,
the SciFact claim id): the first 80% of the sorted group ids learn, the last 20% report, so both
answers of a pair always land on the same side.

SciFact protocol: each (claim, cited abstract) is one row; the abstract's title and text are the
passage. Evidence labelled SUPPORT makes it supported; CONTRADICT, or no evidence in that abstract
(including every cited abstract of a claim whose evidence is empty), makes it not supported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.errors import RagAppError

TRAIN_SHARE = 0.8


@dataclass(frozen=True)
class Example:
    """One labelled claim with its sources."""

    claim: str
    passages: tuple[str, ...]
    context: str
    supported: int
    """1 when the claim is grounded in the passages (and context), 0 when it is hallucinated."""
    group: int
    """Split key: pair id or claim id."""
    task: str


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise RagAppError(
            f"guard data not found: {path} (--data must hold halueval-sum/, halueval-dialogue/, "
            "halueval-qa/ and scifact/)"
        )
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_summarization(data_dir: Path) -> list[Example]:
    """HaluEval summarization: a news article and a faithful or a hallucinated summary."""
    return [
        Example(r["summary"].strip(), (r["document"],), "", 1 - int(r["label"]), int(r["pair_id"]), "sum")
        for r in _jsonl(data_dir / "halueval-sum" / "summarization_pairs.jsonl")
    ]


_GLUED = re.compile(r"(?<=[a-z0-9).])(?=[A-Z][a-z])")


def split_triples(knowledge: str) -> str:
    """HaluEval's knowledge triples as one sentence each.

    The data glues them together ("... starred in ZodiacZodiac is starring ..."): a break goes
    where a lower-case letter meets a capital and the word after it starts a triple elsewhere too
    (the next triple repeats an entity), so names like "McDonald" stay whole.
    """
    cuts = []
    for match in _GLUED.finditer(knowledge):
        i = match.start()
        word = re.match(r"[A-Z][\w'-]*", knowledge[i:])
        if word is None:
            continue
        w = word.group()
        elsewhere = re.search(rf"(?:^|[^\w]){re.escape(w)}\b", knowledge)
        if elsewhere is not None or any(
            knowledge[i - k : i] == knowledge[i : i + k] for k in range(3, min(i, 60) + 1)
        ):
            cuts.append(i)
    pieces = [knowledge[a:b] for a, b in zip([0, *cuts], [*cuts, len(knowledge)], strict=True)]
    return ". ".join(p.strip().rstrip(".") for p in pieces if p.strip()) + "."


def read_dialogue(data_dir: Path) -> list[Example]:
    """HaluEval dialogue: knowledge triples as the passage (one sentence each), the dialogue
    history as context."""
    return [
        Example(
            r["response"].strip(),
            (split_triples(r["context"]),),
            r["dialogue_history"],
            1 - int(r["label"]),
            int(r["pair_id"]),
            "dialogue",
        )
        for r in _jsonl(data_dir / "halueval-dialogue" / "dialogue_pairs.jsonl")
    ]


def read_qa(data_dir: Path) -> list[Example]:
    """HaluEval QA: HotpotQA passages, the question as context, a right or a hallucinated answer."""
    return [
        Example(
            r["answer"].strip(), (r["context"],), r["question"], 1 - int(r["label"]), int(r["pair_id"]), "qa"
        )
        for r in _jsonl(data_dir / "halueval-qa" / "qa_pairs.jsonl")
    ]


def read_scifact(data_dir: Path) -> list[Example]:
    """SciFact claims against each abstract they cite (protocol in the module docstring)."""
    folder = data_dir / "scifact"
    corpus = {str(r["_id"]): f"{r['title']}\n{r['text']}" for r in _jsonl(folder / "corpus.jsonl")}
    rows: list[Example] = []
    for name in ("claims_train.jsonl", "claims_dev.jsonl"):
        for claim in _jsonl(folder / name):
            for doc in claim["cited_doc_ids"]:
                labels = {e["label"] for e in claim["evidence"].get(str(doc), [])}
                if str(doc) not in corpus or len(labels) > 1:
                    continue  # a mixed verdict has no single label
                supported = int(labels == {"SUPPORT"})
                rows.append(
                    Example(claim["claim"], (corpus[str(doc)],), "", supported, int(claim["id"]), "scifact")
                )
    return rows


READERS = {"sum": read_summarization, "dialogue": read_dialogue, "scifact": read_scifact, "qa": read_qa}
"""Task name -> reader."""


def split(examples: Sequence[Example], share: float = TRAIN_SHARE) -> tuple[list[Example], list[Example]]:
    """(first ``share`` of the group ids, the rest), by sorted group id."""
    groups = sorted({e.group for e in examples})
    cut = round(len(groups) * share)
    train_groups = set(groups[:cut])
    train = [e for e in examples if e.group in train_groups]
    test = [e for e in examples if e.group not in train_groups]
    return train, test
