"""The contract of a vector index: :class:`VectorIndex`, the :class:`IndexSpec` that makes one, and
the :data:`VectorSource` that ``refine`` re-scores against.

The backends (:mod:`rag_app.store.faiss_index`, :mod:`rag_app.store.pq`,
:mod:`rag_app.store.milvus`) satisfy it; :mod:`rag_app.store.vectors` picks one by kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

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
    training)`` (:data:`rag_app.store.vectors.VECTOR_INDEXES`) for an empty index, ``.load(path)``
    for a saved one.
    """

    kind: ClassVar[str]
    """The name in :data:`~rag_app.store.vectors.VECTOR_INDEXES` (``index.index_type``, the
    manifest's ``index_type``)."""
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
