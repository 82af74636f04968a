"""Retrieval: the :class:`Retriever` protocol and its main backend, :class:`HybridRetriever` (dense
and BM25 candidates from the store, fused, optionally diversified with MMR); :class:`FixedPassages`
returns passages chosen beforehand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from rag_app.documents import Hit
from rag_app.embeddings.base import Embedder
from rag_app.errors import QueryError
from rag_app.search_options import RETRIEVAL_MODES
from rag_app.settings import RetrievalSettings
from rag_app.store.index import IndexStore

MAX_QUERY_CHARS = 20_000
"""Longer queries are cut here before BM25 (the embedder truncates to its own window anyway)."""


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some documents."""

    source: str | None = None
    """A glob over source paths (``*.pdf``, ``*/manuals/*``); a plain string matches a substring."""
    formats: tuple[str, ...] = ()
    """Document formats to keep, such as ``pdf`` or ``html``."""

    @property
    def active(self) -> bool:
        return bool(self.source or self.formats)


class Retriever(Protocol):
    """Finds the passages that best answer a query (what :class:`~rag_app.answering.Answerer` needs)."""

    def search(self, query: str, k: int | None = None, *, filters: Filters | None = None) -> list[Hit]:
        """Top-``k`` hits for ``query``, best first, optionally only from documents ``filters`` keeps."""
        ...


class FixedPassages:
    """A :class:`Retriever` that returns given passages whatever the query, each passage with a
    dense score rescored against the query by ``embedder`` (so the answerer's retrieval gate,
    ``guard.min_retrieval_score``, judges them as it would real hits)."""

    def __init__(self, hits: Sequence[Hit], embedder: Embedder) -> None:
        self.hits = list(hits)
        self.embedder = embedder

    def search(self, query: str, k: int | None = None, *, filters: Filters | None = None) -> list[Hit]:
        """The first ``k`` of the given passages (``filters`` is ignored: they were chosen already)."""
        if not any("dense" in h.scores for h in self.hits):  # BM25-only hits: no dense gate to feed
            return self.hits[: k or None]
        dense = self.embedder.embed_documents([h.text for h in self.hits]) @ self.embedder.embed_query(query)
        rescored = [replace(h, scores={"dense": float(d)}) for h, d in zip(self.hits, dense, strict=True)]
        return rescored[: k or None]


def reciprocal_rank_fusion(ranked: Sequence[Sequence[tuple[int, float]]], k: int = 60) -> dict[int, float]:
    """RRF: each list adds ``1 / (k + rank)`` (rank from 1) to an item's score."""
    fused: dict[int, float] = {}
    for hits in ranked:
        for rank, (item, _) in enumerate(hits, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def weighted_fusion(
    ranked: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]
) -> dict[int, float]:
    """Convex combination of min-max normalised scores; an item missing from a list scores 0 there."""
    fused: dict[int, float] = {}
    for hits, weight in zip(ranked, weights, strict=True):
        if not hits or weight == 0.0:
            continue
        scores = np.array([s for _, s in hits], dtype=np.float64)
        lo, hi = float(scores.min()), float(scores.max())
        span = hi - lo
        for (item, _), score in zip(hits, scores, strict=True):
            norm = (score - lo) / span if span > 0 else 1.0
            fused[item] = fused.get(item, 0.0) + weight * norm
    return fused


def mmr(query: np.ndarray, candidates: np.ndarray, relevance: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` candidates balancing relevance and novelty."""
    chosen: list[int] = []
    if len(candidates) == 0:
        return chosen
    rel = (relevance - relevance.min()) / (np.ptp(relevance) or 1.0)
    sim = candidates @ candidates.T
    remaining = list(range(len(candidates)))
    while remaining and len(chosen) < k:
        redundancy = sim[np.ix_(remaining, chosen)].max(axis=1) if chosen else np.zeros(len(remaining))
        scores = lam * rel[remaining] - (1.0 - lam) * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


class HybridRetriever:
    """Finds the chunks of an index that best answer a query."""

    def __init__(self, store: IndexStore, embedder: Embedder, settings: RetrievalSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings

    def search(
        self,
        query: str,
        k: int | None = None,
        *,
        filters: Filters | None = None,
        mode: str | None = None,
        mmr_enabled: bool | None = None,
    ) -> list[Hit]:
        """Top-``k`` hits, best first. ``mode`` is ``hybrid``, ``dense`` or ``bm25``."""
        query = query.strip()
        if not query:
            raise QueryError("the query is empty")
        s = self.settings
        k = k or s.k
        mode = mode or s.mode
        if mode not in RETRIEVAL_MODES:
            raise QueryError(f"unknown retrieval mode {mode!r}; use {', '.join(RETRIEVAL_MODES)}")
        use_mmr = s.mmr if mmr_enabled is None else mmr_enabled
        n_candidates = max(s.candidates, k * 4 if use_mmr else k)

        query_vector = None
        if mode in ("hybrid", "dense") or use_mmr:
            query_vector = self.embedder.embed_query(query)
        filters = filters or Filters()
        found = self.store.retrieve(
            k=n_candidates,
            query_vector=query_vector if mode in ("hybrid", "dense") else None,
            query_text=query[:MAX_QUERY_CHARS] if mode in ("hybrid", "bm25") else None,
            source=filters.source,
            formats=filters.formats,
        )
        dense, sparse = found.dense, found.sparse

        if mode == "dense":
            fused = dict(dense)
        elif mode == "bm25":
            fused = dict(sparse)
        elif s.fusion == "rrf":
            fused = reciprocal_rank_fusion([dense, sparse], s.rrf_k)
        else:
            fused = weighted_fusion([dense, sparse], [s.dense_weight, 1.0 - s.dense_weight])
        ranked = sorted(fused.items(), key=lambda item: item[1], reverse=True)

        if use_mmr and ranked and query_vector is not None:
            pool = ranked[:n_candidates]
            ids = [i for i, _ in pool]
            vectors = self.store.chunk_vectors(ids)
            order = mmr(query_vector, vectors, np.array([sc for _, sc in pool]), k, s.mmr_lambda)
            ranked = [pool[i] for i in order]

        hits = self.store.hits(ranked[: k * 3])  # room for duplicates dropped below
        per_retriever = {"dense": dict(dense), "bm25": dict(sparse)}
        unique: list[Hit] = []
        seen: set[str] = set()
        for hit in hits:
            key = " ".join(hit.text.split())
            if key in seen:
                continue  # the same passage in two files (boilerplate, copies)
            seen.add(key)
            hit.scores = {
                name: scores[hit.chunk_id] for name, scores in per_retriever.items() if hit.chunk_id in scores
            }
            unique.append(hit)
            if len(unique) == k:
                break
        return unique
