"""Vector indexes by kind: the one mapping of kinds to backends, and choosing, building, loading one.

A backend is one class satisfying :class:`~rag_app.store.vector_protocol.VectorIndex` plus one
entry in :data:`VECTOR_INDEXES`; everything else (the store, the writer, the retriever) goes through
the protocol. Which kind an index gets is chosen by size (:func:`choose_spec`) unless the user names
one (``index.index_type``). The kinds live in :mod:`rag_app.store.faiss_index` (flat, HNSW, IVF)
and :mod:`rag_app.store.pq` (IVF-PQ, OPQ + IVF-PQ).

The compressed kinds (``ivfpq``, ``opq-ivfpq``) hold product-quantized codes only (``pq_m`` bytes a
vector with 8-bit codes, plus its id); :func:`attach` hands them the store's full vectors for
``refine`` (exact re-scoring of the best PQ candidates) and the search-time ``nprobe``.

Milvus (:class:`rag_app.store.milvus.MilvusIndex`) follows the same protocol but is not a kind
here: it is chosen by ``index.backend``, and the store opens it by the manifest's ``backend``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.errors import IndexMismatchError
from rag_app.store.faiss_index import FaissIndex, FlatIndex, HnswIndex, IvfIndex, gpu_count
from rag_app.store.pq import OpqPqIndex, PqIndex, outgrown
from rag_app.store.vector_protocol import IndexSpec, VectorIndex, VectorSource

__all__ = [
    "BUILD_KEYS",
    "FLAT_MAX",
    "HNSW_MAX",
    "SEARCH_KEYS",
    "VECTOR_INDEXES",
    "FaissIndex",
    "FlatIndex",
    "HnswIndex",
    "IndexSpec",
    "IvfIndex",
    "OpqPqIndex",
    "PqIndex",
    "VectorIndex",
    "VectorSource",
    "attach",
    "backend",
    "build_index",
    "choose_spec",
    "gpu_count",
    "load_index",
    "new_index",
    "outgrown",
    "recorded_params",
]

FLAT_MAX = 50_000
HNSW_MAX = 1_000_000
"""``auto`` picks IVF-PQ (with refine) from this many vectors on: a twentieth of the memory of
flat, HNSW or IVF-Flat (see bench/README.md, "Scale")."""

BUILD_KEYS = ("nlist", "pq_m", "pq_nbits")
"""Parameters baked into a trained index: changing one in the settings rebuilds it."""
SEARCH_KEYS = ("nprobe", "refine", "retrain_factor")
"""Parameters that apply to an index as it is: a changed setting is recorded at the next write."""


VECTOR_INDEXES: dict[str, type[VectorIndex]] = {
    "flat": FlatIndex,
    "hnsw": HnswIndex,
    "ivf": IvfIndex,
    "ivfpq": PqIndex,
    "opq-ivfpq": OpqPqIndex,
}
"""Index kind (``index.index_type``, the manifest's ``index_type``) -> its backend class."""


def backend(kind: str) -> type[VectorIndex]:
    """The class of index kind ``kind``; a clear error naming the kinds there are."""
    cls = VECTOR_INDEXES.get(kind)
    if cls is None:
        raise ValueError(f"unknown index type {kind!r}; allowed: auto, {', '.join(VECTOR_INDEXES)}")
    return cls


def choose_spec(
    n_vectors: int, requested: str = "auto", overrides: Mapping[str, Any] | None = None
) -> IndexSpec:
    """Exact search while it is cheap; HNSW for medium corpora; IVF-PQ from a million vectors.

    ``overrides`` (``index.nlist``, ``index.nprobe``, ...; see
    :meth:`rag_app.settings.IndexSettings.vector_params`) replace the defaults of the parameters the
    kind has (the others are ignored: ``refine`` means nothing to ``flat``).
    """
    kind = requested
    if kind == "auto":
        kind = "flat" if n_vectors < FLAT_MAX else "hnsw" if n_vectors < HNSW_MAX else "ivfpq"
    params = backend(kind).default_params(n_vectors)
    for key, value in (overrides or {}).items():
        if key in params and value is not None:
            params[key] = value
    return IndexSpec(kind, params)


def new_index(spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> VectorIndex:
    """An empty index of ``spec``."""
    return backend(spec.type).new(spec, dimension, training)


def build_index(
    spec: IndexSpec, dimension: int, batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> VectorIndex:
    """Build an index from (ids, vectors) batches.

    Kinds that train do so on the first ``train_size`` vectors (the first batch when the kind has
    no such parameter): the oldest chunks when the batches come from the docstore in id order.
    """
    want = int(spec.params.get("train_size") or 0)
    index: VectorIndex | None = None
    held: list[tuple[np.ndarray, np.ndarray]] = []
    for ids, vectors in batches:
        if index is None:
            held.append((ids, vectors))
            if sum(len(i) for i, _ in held) < want:
                continue
            index = _trained(spec, dimension, held)
            held = []
        else:
            index.add(ids, vectors)
    if index is None and held:
        index = _trained(spec, dimension, held)
    if index is None:
        return new_index(IndexSpec("flat"), dimension)
    if isinstance(index, PqIndex):
        index.params["built_for"] = index.ntotal
    return index


def _trained(spec: IndexSpec, dimension: int, held: list[tuple[np.ndarray, np.ndarray]]) -> VectorIndex:
    training = held[0][1] if len(held) == 1 else np.concatenate([v for _, v in held])
    index = new_index(spec, dimension, training=training)
    for ids, vectors in held:
        index.add(ids, vectors)
    return index


def recorded_params(index: VectorIndex, spec: IndexSpec) -> dict[str, Any]:
    """The parameters to keep in the manifest: what the index was actually built with."""
    return dict(index.params) if isinstance(index, PqIndex) else dict(spec.params)


def attach(index: VectorIndex, params: Mapping[str, Any], vectors: VectorSource | None = None) -> None:
    """Give a compressed index its manifest parameters and the full vectors ``refine`` re-scores
    against (a no-op for the other kinds)."""
    if isinstance(index, PqIndex):
        index.configure(params, vectors)
    elif isinstance(index, IvfIndex) and params.get("nprobe"):
        index.index.nprobe = int(params["nprobe"])  # type: ignore[attr-defined]


def load_index(kind: str, path: Path, dimension: int | None = None) -> VectorIndex:
    """Read the index file ``path`` of kind ``kind`` (the manifest's ``index_type``).

    With ``dimension`` (the manifest's), a file of another width is an :class:`IndexMismatchError`.
    """
    index = backend(kind).load(path)
    width = getattr(getattr(index, "index", None), "d", dimension)
    if dimension is not None and width != dimension:
        raise IndexMismatchError(
            f"{path.name} holds {width}-dimensional vectors but the manifest says {dimension}"
        )
    return index
