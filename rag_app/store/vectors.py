"""Vector indexes behind one :class:`VectorIndex` protocol; FAISS flat / HNSW / IVF / IVF-PQ as backends.

A backend is one class plus one entry in :data:`VECTOR_INDEXES`; everything else (the store, the
writer, the retriever) goes through the protocol. Which kind an index gets is chosen by size
(:func:`choose_spec`) unless the user names one (``index.index_type``).

The compressed kinds (``ivfpq``, ``opq-ivfpq``) hold product-quantized codes only (``pq_m`` bytes a
vector with 8-bit codes, plus its id); :func:`attach` hands them the store's full vectors for
``refine`` (exact re-scoring of the best PQ candidates) and the search-time ``nprobe``.

Milvus (:class:`rag_app.store.milvus.MilvusIndex`) follows the same protocol but is not a kind
here: it is chosen by ``index.backend``, and the store opens it by the manifest's ``backend``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from rag_app.errors import ConfigError, IndexMismatchError
from rag_app.store.fsutil import atomic_path

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

FLAT_MAX = 50_000
HNSW_MAX = 1_000_000
"""``auto`` picks IVF-PQ (with refine) from this many vectors on: a twentieth of the memory of
flat, HNSW or IVF-Flat (see bench/README.md, "Scale")."""

BUILD_KEYS = ("nlist", "pq_m", "pq_nbits")
"""Parameters baked into a trained index: changing one in the settings rebuilds it."""
SEARCH_KEYS = ("nprobe", "refine", "retrain_factor")
"""Parameters that apply to an index as it is: a changed setting is recorded at the next write."""

VectorSource = Callable[[np.ndarray], np.ndarray]
"""Full-precision vectors of some ids (one row each, in order; zeros for unknown ids): the
docstore's copy, which ``refine`` re-scores PQ candidates against."""


@dataclass(frozen=True)
class IndexSpec:
    """Which vector index to build, with its parameters (recorded in the manifest)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorIndex(Protocol):
    """Vectors by integer id, searched by inner product.

    A backend class is made by its classmethods: ``VECTOR_INDEXES[kind].new(spec, dimension,
    training)`` for an empty index, ``.load(path)`` for a saved one.
    """

    kind: ClassVar[str]
    """The name in :data:`VECTOR_INDEXES` (``index.index_type``, the manifest's ``index_type``)."""
    updatable: ClassVar[bool]
    """Whether :meth:`remove` and later :meth:`add` keep the index as good as a rebuild."""

    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        """Build parameters for an index of about ``n_vectors`` vectors (kept in the manifest)."""
        ...

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> VectorIndex:
        """An empty index of ``spec``; ``training`` vectors for kinds that need training."""
        ...

    @property
    def ntotal(self) -> int:
        """Number of vectors held."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (n x dimension) under ``ids`` (n int64)."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Remove the vectors of ``ids`` (unknown ids are ignored)."""
        ...

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-``k`` (id, inner product) for one query vector, optionally only among ``allowed_ids``."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to ``path`` atomically."""
        ...

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index written by :meth:`save`."""
        ...

    def to_device(self, use_gpu: str = "auto") -> VectorIndex:
        """This index placed for search (on GPU when the backend can and ``use_gpu`` allows)."""
        ...


def _faiss() -> Any:
    import faiss

    return faiss


def gpu_count() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu)."""
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


@contextmanager
def _single_thread(faiss: Any) -> Iterator[None]:
    """Run FAISS on one OpenMP thread for a while (this thread's setting only; restored after)."""
    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved)


class FaissIndex:
    """A FAISS index with ids (``add_with_ids``), inner-product metric; the shared FAISS behaviour.

    Subclasses say how an empty index of their kind is made (:meth:`new`) and with which default
    parameters (:meth:`default_params`).
    """

    kind: ClassVar[str] = ""
    updatable: ClassVar[bool] = False

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    # -- making one ------------------------------------------------------------------------
    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        """Parameters for an index of about ``n_vectors`` vectors."""
        return {}

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> FaissIndex:
        """An empty index of ``spec``; ``training`` vectors for kinds that need training."""
        raise NotImplementedError

    # -- the protocol ----------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
        )

    def remove(self, ids: np.ndarray) -> None:
        # faiss's stubs name only the IDSelector overload; an id array is accepted too
        self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-``k`` (id, inner product) for one query vector, optionally restricted to ``allowed_ids``.

        One query runs on one OpenMP thread: splitting a single query over threads gains little,
        and when another process holds a core the threads wait on each other at every barrier
        (measured on 2 busy cores, flat index of 11,636 x 384, top 100: 24 ms p50 on 2 threads,
        0.8 ms on 1).
        """
        index = self.index
        q = _query_row(query, int(index.d))
        if index.ntotal == 0 or k <= 0:
            return []
        faiss = _faiss()
        k = min(k, int(index.ntotal))
        if allowed_ids is not None:
            if len(allowed_ids) == 0:
                return []
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            with _single_thread(faiss):
                scores, ids = index.search(q, k, params=self._search_params(selector))
        else:
            with _single_thread(faiss):
                scores, ids = index.search(q, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def _search_params(self, selector: Any) -> Any:
        """FAISS search parameters restricting a search to ``selector`` (IVF: with its nprobe)."""
        faiss = _faiss()
        if isinstance(self.index, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        return faiss.SearchParameters(sel=selector)

    def save(self, path: Path) -> None:
        """Write to ``path`` atomically (a CPU copy if the index lives on GPU)."""
        faiss = _faiss()
        with atomic_path(path) as tmp:
            faiss.write_index(_to_cpu(self.index), str(tmp))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        return cls(_faiss().read_index(str(path)))

    def to_device(self, use_gpu: str = "auto") -> FaissIndex:
        """Moved to all GPUs when the faiss build has GPU support; HNSW stays on CPU."""
        if use_gpu == "never" or gpu_count() == 0:
            if use_gpu == "always":
                raise RuntimeError(
                    "index.use_gpu is 'always' but faiss sees no GPU (install the `gpu` extra)"
                )
            return self
        faiss = _faiss()
        try:
            return type(self)(faiss.index_cpu_to_all_gpus(self.index))
        except RuntimeError as exc:  # e.g. HNSW has no GPU implementation
            if use_gpu == "always":
                raise
            log.info("keeping the vector index on CPU: %s", exc)
            return self


def _query_row(query: np.ndarray, dimension: int) -> np.ndarray:
    """``query`` as one float32 row; :class:`IndexMismatchError` when its width is not the index's."""
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
    if q.shape[1] != dimension:
        raise IndexMismatchError(
            f"query vector has {q.shape[1]} dimensions but the vector index holds {dimension}; "
            "embed queries with the model the index was built with (see `rag-app index stats`) "
            "or re-ingest into a new index"
        )
    return q


def _to_cpu(index: faiss.Index) -> faiss.Index:
    faiss = _faiss()
    if gpu_count() and hasattr(faiss, "index_gpu_to_cpu"):
        try:
            return faiss.index_gpu_to_cpu(index)
        except (RuntimeError, AttributeError):
            return index
    return index


class FlatIndex(FaissIndex):
    """Exact search (``IndexFlatIP``): the default below 50k vectors; updated in place."""

    kind = "flat"
    updatable = True

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> FlatIndex:
        faiss = _faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)))


class HnswIndex(FaissIndex):
    """Approximate search on a graph (``IndexHNSWFlat``): medium corpora; rebuilt on change."""

    kind = "hnsw"

    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        return {"M": 32, "ef_construction": 80, "ef_search": 128}

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> HnswIndex:
        faiss = _faiss()
        inner = faiss.IndexHNSWFlat(dimension, spec.params["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = spec.params["ef_construction"]
        inner.hnsw.efSearch = spec.params["ef_search"]
        return cls(faiss.IndexIDMap2(inner))


class IvfIndex(FaissIndex):
    """Inverted lists over a trained coarse quantizer (``IndexIVFFlat``): past a million vectors."""

    kind = "ivf"

    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        nlist = int(min(65_536, max(16, 4 * math.sqrt(max(n_vectors, 1)))))
        return {"nlist": nlist, "nprobe": max(8, nlist // 32)}

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> IvfIndex:
        faiss = _faiss()
        nlist = spec.params["nlist"]
        if training is None or len(training) < nlist:
            raise ValueError("an IVF index needs at least nlist training vectors")
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(np.ascontiguousarray(training, dtype=np.float32))
        ivf.nprobe = spec.params["nprobe"]
        return cls(ivf)


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
    and the store's vectors attached (:func:`attach`), the best ``refine x k`` candidates are
    re-scored exactly, so the scores returned are true inner products.

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
            "refine": 4,
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
        faiss = _faiss()
        return faiss.IndexIVFPQ(
            faiss.IndexFlatIP(dimension),
            dimension,
            int(params["nlist"]),
            int(params["pq_m"]),
            int(params["pq_nbits"]),
            faiss.METRIC_INNER_PRODUCT,
        )

    def _ivf(self) -> Any:
        return _faiss().extract_index_ivf(self.index)

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
        q = _query_row(query, int(self.index.d))
        candidates = super().search(q, k * refine, allowed_ids)
        if not candidates:
            return []
        ids = np.fromiter((i for i, _ in candidates), dtype=np.int64, count=len(candidates))
        full = np.asarray(self.vectors(ids), dtype=np.float32)
        scores = full @ q[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[j]), float(scores[j])) for j in order]

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(self._ivf().nprobe))

    @classmethod
    def load(cls, path: Path) -> PqIndex:
        index = _faiss().read_index(str(path))
        ivf = _faiss().extract_index_ivf(index)
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
        faiss = _faiss()
        return faiss.IndexPreTransform(
            faiss.OPQMatrix(dimension, int(params["pq_m"])), super()._untrained(params, dimension)
        )

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()
        return faiss.SearchParametersPreTransform(index_params=super()._search_params(selector))


def attach(index: VectorIndex, params: Mapping[str, Any], vectors: VectorSource | None = None) -> None:
    """Give a compressed index its manifest parameters and the full vectors ``refine`` re-scores
    against (a no-op for the other kinds)."""
    if isinstance(index, PqIndex):
        index.configure(params, vectors)
    elif isinstance(index, IvfIndex) and params.get("nprobe"):
        index.index.nprobe = int(params["nprobe"])  # type: ignore[attr-defined]


def outgrown(params: Mapping[str, Any], n_vectors: int) -> bool:
    """Whether an index built for ``params["built_for"]`` vectors has grown past ``retrain_factor``
    times that (its lists too long, its training sample too small for the data): rebuild it."""
    built_for = int(params.get("built_for") or 0)
    factor = float(params.get("retrain_factor") or 0)
    return built_for > 0 and factor > 0 and n_vectors > built_for * factor


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
