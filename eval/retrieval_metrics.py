"""Retrieval metrics with the BEIR / trec_eval definitions: nDCG@k, recall@k, MRR, hit rate.

A ranking is a list of document keys, best first; relevance is ``{key: graded relevance}``
(qrels). :func:`hit_key` and :func:`ranked_keys` turn retrieved passages into keys that match a
sample's ``relevant`` ids (a document id, a file path or name, or a chunk id), and fall back to
the reference passage texts when a sample has no ids.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath

Qrels = dict[str, dict[str, int]]
"""query id -> {document id: relevance}."""


def ndcg_at(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    """BEIR/trec_eval nDCG@k: gain is the qrel score, discount log2(rank + 1), ideal from the qrels."""
    dcg = sum(rels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], rels: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents (relevance > 0) found in the first ``k``."""
    relevant = {doc for doc, gain in rels.items() if gain > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], rels: Mapping[str, int], k: int | None = None) -> float:
    """1 / rank of the first relevant document (0 when none is in the first ``k``)."""
    for i, doc in enumerate(ranked[:k] if k else ranked):
        if rels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def hit_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """1 when any relevant document is in the first ``k``."""
    return float(any(rels.get(doc, 0) > 0 for doc in ranked[:k]))


def evaluate(run: Mapping[str, Sequence[str]], qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10 and recall@100 over the queries that have qrels (the BEIR headline pair)."""
    ndcg = [ndcg_at(run.get(q, []), rels) for q, rels in qrels.items()]
    recall = [recall_at(run.get(q, []), rels) for q, rels in qrels.items()]
    return {
        "ndcg@10": round(sum(ndcg) / len(ndcg), 4),
        "recall@100": round(sum(recall) / len(recall), 4),
        "queries": len(qrels),
    }


def retrieval_scores(
    ranked: Sequence[str], rels: Mapping[str, int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """recall@k for each k, MRR and nDCG@10 of one ranking, keyed ``retrieval.<name>``."""
    out = {f"retrieval.recall@{k}": recall_at(ranked, rels, k) for k in ks}
    out["retrieval.mrr"] = reciprocal_rank(ranked, rels)
    out["retrieval.ndcg@10"] = ndcg_at(ranked, rels, 10)
    return out


# -- matching retrieved passages to references -----------------------------------------------------
_WORD = re.compile(r"\w+", re.UNICODE)


def hit_key(source: str, chunk_id: int, relevant: Mapping[str, int]) -> str | None:
    """The id in ``relevant`` that a passage (its document ``source``, its ``chunk_id``) stands for.

    Tried in order: the source itself, the part after a ``dataset:`` or ``dataset/`` prefix, the
    file name, the file stem, the chunk id.
    """
    candidates = [source]
    for sep in (":", "/"):
        if sep in source:
            candidates.append(source.split(sep, 1)[1])
    path = PurePath(source)
    candidates += [path.name, path.stem, str(chunk_id)]
    return next((c for c in candidates if c in relevant), None)


def overlaps(passage: str, reference: str, threshold: float = 0.6) -> bool:
    """True when ``passage`` contains most of ``reference``'s words (or the reverse).

    Used for samples that give reference passage texts but no ids: chunking rarely cuts a
    reference passage exactly, so containment of words, not equality of strings, decides.
    """
    p = set(_WORD.findall(passage.lower()))
    r = set(_WORD.findall(reference.lower()))
    if not p or not r:
        return False
    common = len(p & r)
    return common / len(r) >= threshold or common / len(p) >= threshold


def ranked_keys(
    passages: Sequence[tuple[str, int, str]], relevant: Mapping[str, int], contexts: Sequence[str]
) -> tuple[list[str], dict[str, int]]:
    """A ranking of keys and the qrels to score it with, for passages ``(source, chunk_id, text)``.

    With ``relevant`` ids: each passage becomes its matching id (or a unique miss key), repeated
    documents keep their first rank. Without ids but with reference ``contexts``: each reference
    passage is one relevant item, found by :func:`overlaps`.
    """
    keys: list[str] = []
    if relevant:
        for i, (source, chunk_id, _) in enumerate(passages):
            key = hit_key(source, chunk_id, relevant) or f"miss:{i}"
            if key not in keys:
                keys.append(key)
        return keys, dict(relevant)
    rels = {f"ref:{j}": 1 for j in range(len(contexts))}
    for i, (_, _, text) in enumerate(passages):
        match = next((f"ref:{j}" for j, c in enumerate(contexts) if overlaps(text, c)), None)
        key = match if match is not None and match not in keys else f"miss:{i}"
        keys.append(key)
    return keys, rels
