"""The compressed FAISS kinds: IVF-PQ (``ivfpq``) and IVF-PQ after a learned rotation (``opq-ivfpq``).

They hold product-quantized codes only (``pq_m`` bytes a vector with 8-bit codes, plus its id);
:func:`rag_app.store.vectors.attach` hands them the store's full vectors for ``refine`` (exact
re-scoring of the best PQ candidates) and the search-time ``nprobe``. Past ``retrain_factor`` times
the size they were trained at, :func:`outgrown` says so and the writer retrains them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.errors import ConfigError
from rag_app.store.faiss_index import FaissIndex, faiss_module, query_row

if TYPE_CHECKING:
    import faiss

    from rag_app.store.vector_protocol import IndexSpec, VectorSource


def _nlist(n_vectors: int) -> int:
    """About 4 sqrt(n) inverted lists, a power of two between 16 and 65,536 (1M vectors: 4,096)."""
    target = 4 * math.sqrt(max(n_vectors, 1))
    return int(min(65_536, max(16, 2 ** round(math.log2(max(target, 1.0))))))


def _pq_m(dimension: int, requested: int) -> int:
    """Sub-quantizers: ``requested`` when it divides ``dimension``; auto (0) is one per 8 dims."""
    if requested:
        if dimension % requested:
            raise ConfigError(
                f"index.pq_m = {requested} does not divide the embedding dimension {dimension}; "
                f"pick a divisor of {dimension} (e.g. {_largest_divisor(dimension, dimension // 8)})"
            )
        return requested
    return _largest_divisor(dimension, max(1, dimension // 8))


def _largest_divisor(n: int, at_most: int) -> int:
    return next(m for m in range(max(1, at_most), 0, -1) if n % m == 0)


class PqIndex(FaissIndex):
    """IVF over product-quantized codes (``IndexIVFPQ``): tens of millions of vectors in memory.

    Each vector is stored as ``pq_m`` codes of ``pq_nbits`` bits (384 dims, ``pq_m`` 48: 48 bytes
    plus an 8-byte id, against 1,536 bytes as float32). Scores are approximate; with ``refine`` > 0
    and the store's vectors attached (:func:`~rag_app.store.vectors.attach`), the best
    ``refine x k`` candidates are re-scored exactly, so the scores returned are true inner products.

    Adds and removes update the codes in place (the quantizers stay as trained); past
    ``retrain_factor`` times the size it was trained at, :func:`outgrown` says so and the writer
    retrains it from the docstore.
    """

    kind = "ivfpq"
    updatable = True

    def __init__(self, index: faiss.Index, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(index)
        self.params: dict[str, Any] = dict(params or {})
        self.vectors: VectorSource | None = None
        self._apply_nprobe()

    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        nlist = _nlist(n_vectors)
        return {
            "nlist": nlist,
            "nprobe": max(16, nlist // 32),
            "pq_m": 0,
            "pq_nbits": 8,
            "train_size": min(max(n_vectors, 1), max(65_536, 40 * nlist)),
            "refine": 8,
            "retrain_factor": 4.0,
            "built_for": n_vectors,
        }

    @classmethod
    def minimum_training(cls, params: Mapping[str, Any]) -> int:
        """Fewest training vectors FAISS accepts: one per inverted list and per PQ centroid."""
        return max(int(params["nlist"]), 2 ** int(params["pq_nbits"]))

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> PqIndex:
        params = dict(spec.params)
        params["pq_m"] = _pq_m(dimension, int(params.get("pq_m", 0)))
        needed = cls.minimum_training(params)
        have = 0 if training is None else len(training)
        if have < needed:
            raise ConfigError(
                f"index type {cls.kind!r} needs at least {needed:,} vectors to train on (nlist "
                f"{params['nlist']:,}, 2^pq_nbits {2 ** int(params['pq_nbits']):,}) but has {have:,}; "
                f"use index.index_type 'flat', 'hnsw' or 'auto' until the index holds {needed:,} "
                "vectors, or lower index.nlist / index.pq_nbits"
            )
        assert training is not None
        sample = np.ascontiguousarray(training[: int(params.get("train_size") or have)], dtype=np.float32)
        index = cls._untrained(params, dimension)
        index.train(sample)
        params["trained_on"] = len(sample)
        return cls(index, params)

    @classmethod
    def _untrained(cls, params: Mapping[str, Any], dimension: int) -> faiss.Index:
        faiss = faiss_module()
        return faiss.IndexIVFPQ(
            faiss.IndexFlatIP(dimension),
            dimension,
            int(params["nlist"]),
            int(params["pq_m"]),
            int(params["pq_nbits"]),
            faiss.METRIC_INNER_PRODUCT,
        )

    def _ivf(self) -> Any:
        return faiss_module().extract_index_ivf(self.index)

    def _apply_nprobe(self) -> None:
        nprobe = int(self.params.get("nprobe") or 0)
        if nprobe > 0:
            # a GPU copy is no CPU IVF; it was cloned with the nprobe set here before the move
            with suppress(RuntimeError, TypeError):
                self._ivf().nprobe = nprobe

    def configure(self, params: Mapping[str, Any], vectors: VectorSource | None = None) -> None:
        """Take the manifest's parameters (``nprobe`` applies to the next search) and, for
        ``refine``, the source of full vectors."""
        self.params.update(params)
        self.vectors = vectors
        self._apply_nprobe()

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-``k`` by PQ score over ``nprobe`` lists; with ``refine`` and vectors, re-scored exactly."""
        refine = int(self.params.get("refine") or 0)
        if refine <= 0 or self.vectors is None or k <= 0:
            return super().search(query, k, allowed_ids)
        q = query_row(query, int(self.index.d))
        candidates = super().search(q, k * refine, allowed_ids)
        if not candidates:
            return []
        ids = np.fromiter((i for i, _ in candidates), dtype=np.int64, count=len(candidates))
        full = np.asarray(self.vectors(ids), dtype=np.float32)
        scores = full @ q[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[j]), float(scores[j])) for j in order]

    def _search_params(self, selector: Any) -> Any:
        faiss = faiss_module()
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(self._ivf().nprobe))

    @classmethod
    def load(cls, path: Path) -> PqIndex:
        index = faiss_module().read_index(str(path))
        ivf = faiss_module().extract_index_ivf(index)
        return cls(index, {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)})

    def to_device(self, use_gpu: str = "auto") -> PqIndex:
        placed = super().to_device(use_gpu)
        if placed is self:
            return self
        moved = type(self)(placed.index, self.params)
        moved.vectors = self.vectors
        return moved


class OpqPqIndex(PqIndex):
    """IVF-PQ after a learned rotation (``OPQMatrix`` + ``IndexIVFPQ``): the same memory as
    ``ivfpq``, a slower build (the rotation is trained), better codes for correlated dims."""

    kind = "opq-ivfpq"

    @classmethod
    def _untrained(cls, params: Mapping[str, Any], dimension: int) -> faiss.Index:
        faiss = faiss_module()
        return faiss.IndexPreTransform(
            faiss.OPQMatrix(dimension, int(params["pq_m"])), super()._untrained(params, dimension)
        )

    def _search_params(self, selector: Any) -> Any:
        faiss = faiss_module()
        return faiss.SearchParametersPreTransform(index_params=super()._search_params(selector))


def outgrown(params: Mapping[str, Any], n_vectors: int) -> bool:
    """Whether an index built for ``params["built_for"]`` vectors has grown past ``retrain_factor``
    times that (its lists too long, its training sample too small for the data): rebuild it."""
    built_for = int(params.get("built_for") or 0)
    factor = float(params.get("retrain_factor") or 0)
    return built_for > 0 and factor > 0 and n_vectors > built_for * factor
