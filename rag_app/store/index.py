"""An index folder opened for reading: docstore, vectors, BM25 and manifest, kept current.

:class:`IndexStore` opens (or creates) an index folder, loads the derived files on first use and
reloads them when another process commits; stale or unreadable ones are rebuilt from the docstore
in memory, and Milvus is reconciled with it after a crash. Changes go through the one writer,
:class:`rag_app.store.writer.IndexWriter` (:meth:`IndexStore.writer`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock

from rag_app.documents import Hit
from rag_app.errors import IndexLockedError, IndexMismatchError, IndexNotFoundError
from rag_app.store import milvus
from rag_app.store import vectors as vec
from rag_app.store.docstore import DOCSTORE_NAME, Docstore
from rag_app.store.manifest import MANIFEST_NAME, Manifest, utc_now
from rag_app.store.milvus_connection import MilvusCollectionMissingError
from rag_app.store.sparse import SparseIndex
from rag_app.store.vector_protocol import IndexSpec, VectorIndex
from rag_app.store.writer import LOCK_NAME, IndexWriter

if TYPE_CHECKING:
    from rag_app.settings import IndexSettings

log = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "Candidates", "IndexStore", "IndexWriter"]


def _folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder``; a file a writer removes meanwhile counts as 0."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class Candidates:
    """What :meth:`IndexStore.retrieve` found: (chunk id, score) lists, best first."""

    dense: list[tuple[int, float]]
    """By inner product with the query vector (empty when none was given)."""
    sparse: list[tuple[int, float]]
    """By BM25 score of the query text (empty when none was given)."""


class IndexStore:
    """Read access to an index folder: docstore, FAISS vectors, BM25, manifest.

    Derived files are loaded on first use and reloaded when another process commits a
    newer generation; if they are stale (a crash between commit and manifest), they are
    rebuilt from the docstore in memory.
    """

    def __init__(self, folder: Path, manifest: Manifest, use_gpu: str = "auto", nprobe: int = 0) -> None:
        self.folder = folder
        self.manifest = manifest
        self.use_gpu = use_gpu
        self.nprobe = nprobe
        """IVF kinds: lists searched per query, over the manifest's (``index.nprobe``; 0 keeps it)."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._vectors: VectorIndex | None = None
        self._sparse: SparseIndex | None = None
        self._loaded_generation = -1
        self._manifest_mtime = self._manifest_stamp()

    # -- opening ------------------------------------------------------------------------
    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / MANIFEST_NAME).is_file()

    @classmethod
    def open(cls, folder: str | Path, use_gpu: str = "auto", *, nprobe: int = 0) -> IndexStore:
        """Open an existing index; raises :class:`IndexNotFoundError` if there is none."""
        path = Path(folder)
        if not path.exists():
            raise IndexNotFoundError(
                f"index folder {path} does not exist; run `rag-app ingest PATH --index {path}`"
            )
        return cls(path, Manifest.load(path), use_gpu, nprobe)

    @classmethod
    def create(
        cls,
        folder: str | Path,
        *,
        embedding_model: str,
        embedding_model_id: str,
        dimension: int,
        chunk_tokens: int,
        overlap_tokens: int,
        use_gpu: str = "auto",
    ) -> IndexStore:
        """Create an empty index folder (or open it if another process just created it)."""
        path = Path(folder)
        if path.exists() and not path.is_dir():
            raise IndexNotFoundError(f"{path} exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path / LOCK_NAME), timeout=30):
            if not cls.exists(path):
                Docstore(path / DOCSTORE_NAME).close()
                now = utc_now()
                Manifest(
                    embedding_model=embedding_model,
                    embedding_model_id=embedding_model_id,
                    dimension=dimension,
                    chunk_tokens=chunk_tokens,
                    overlap_tokens=overlap_tokens,
                    created_at=now,
                    updated_at=now,
                ).save(path)
        return cls.open(path, use_gpu)

    # -- reading ------------------------------------------------------------------------
    @property
    def docstore(self) -> Docstore:
        """A read connection for the calling thread."""
        store = getattr(self._local, "docstore", None)
        if store is None:
            store = Docstore(self.folder / DOCSTORE_NAME)
            self._local.docstore = store
        return store

    def _manifest_stamp(self) -> float:
        try:
            return (self.folder / MANIFEST_NAME).stat().st_mtime_ns
        except OSError:
            return 0.0

    def refresh(self) -> None:
        """Pick up a newer manifest written by another process (cheap: one stat)."""
        stamp = self._manifest_stamp()
        if stamp != self._manifest_mtime:
            with self._lock:
                self.manifest = Manifest.load(self.folder)
                self._manifest_mtime = stamp

    def _ensure_loaded(self) -> None:
        self.refresh()
        generation = self.docstore.generation
        if self._loaded_generation == generation and self._vectors is not None:
            return
        with self._lock:
            if self._loaded_generation == generation and self._vectors is not None:
                return
            m = self.manifest
            if m.backend == milvus.KIND:
                index, sparse = self._milvus_loaded(generation)
            elif m.generation == generation and m.vectors_file and (self.folder / m.vectors_file).is_file():
                try:
                    index = vec.load_index(m.index_type, self.folder / m.vectors_file, m.dimension)
                    sparse = SparseIndex.load(self.folder / m.bm25_dir)
                except (OSError, RuntimeError, ValueError, IndexMismatchError) as exc:
                    log.warning("derived index files unreadable (%s); rebuilding from the docstore", exc)
                    index, sparse = self._rebuild()
            else:
                if generation:
                    log.warning(
                        "derived index files are stale (generation %s, docstore %s); rebuilding",
                        m.generation,
                        generation,
                    )
                index, sparse = self._rebuild()
            params = m.index_params | ({"nprobe": self.nprobe} if self.nprobe else {})
            vec.attach(index, params, self._stored_vectors)
            self._vectors = index.to_device(self.use_gpu)
            self._sparse = sparse
            self._loaded_generation = generation

    def _milvus_loaded(self, generation: int) -> tuple[VectorIndex, SparseIndex]:
        """Milvus (repaired first when the manifest lags behind the docstore) and BM25."""
        m = self.manifest
        if m.generation != generation or not m.vectors_file:
            m = self._repair_milvus()
        if not m.vectors_file:  # never synced, and a writer is at it: search in memory meanwhile
            return self._rebuild()
        try:
            index: VectorIndex = milvus.MilvusIndex.load(self.folder / m.vectors_file)
        except MilvusCollectionMissingError as exc:
            log.warning("%s; filling a new one from the docstore", exc)
            m = self._repair_milvus()
            index = milvus.MilvusIndex.load(self.folder / m.vectors_file)
        if m.generation == self.docstore.generation and (self.folder / m.bm25_dir).is_dir():
            return index, SparseIndex.load(self.folder / m.bm25_dir)
        return index, SparseIndex.build(self.docstore.iter_texts())

    def _repair_milvus(self) -> Manifest:
        """Reconcile Milvus with the docstore under the writer lock (after a crash between them).

        A writer holding the lock does the same when it finishes; until then Milvus is searched
        as it is (hits whose chunks are gone are dropped by :meth:`hits`).
        """
        try:
            with IndexWriter(self, "auto") as writer:
                writer.resync = True
        except IndexLockedError:
            log.info("a writer of %s is active; it brings Milvus up to date when it finishes", self.folder)
        except OSError as exc:  # e.g. a read-only index folder: search Milvus as it is
            log.warning(
                "could not repair the Milvus vectors of %s (%s); searching them as they are", self.folder, exc
            )
        self.manifest = Manifest.load(self.folder)
        self._manifest_mtime = self._manifest_stamp()
        return self.manifest

    def _rebuild(self) -> tuple[VectorIndex, SparseIndex]:
        _, chunks = self.docstore.counts()
        spec = (
            IndexSpec(self.manifest.index_type, self.manifest.index_params)
            if chunks and self.manifest.backend != milvus.KIND
            else IndexSpec("flat")
        )
        dim = self.manifest.dimension
        index = vec.build_index(spec, dim, self.docstore.iter_vectors(dim))
        return index, SparseIndex.build(self.docstore.iter_texts())

    @property
    def vectors(self) -> VectorIndex:
        """The vector index (on GPU when available and allowed)."""
        self._ensure_loaded()
        assert self._vectors is not None
        return self._vectors

    @property
    def sparse(self) -> SparseIndex:
        self._ensure_loaded()
        assert self._sparse is not None
        return self._sparse

    def retrieve(
        self,
        *,
        k: int,
        query_vector: np.ndarray | None = None,
        query_text: str | None = None,
        source: str | None = None,
        formats: Sequence[str] = (),
    ) -> Candidates:
        """The top-``k`` chunks by vector (``query_vector``) and by BM25 (``query_text``).

        ``source`` (a glob over source paths, or a substring) and ``formats`` restrict both to
        some documents.
        """
        allowed = None
        if source or formats:
            allowed = self.docstore.chunk_ids_matching(source_glob=source, formats=formats or None)
        dense = self.vectors.search(query_vector, k, allowed) if query_vector is not None else []
        sparse = self.sparse.search(query_text, k, allowed) if query_text is not None else []
        return Candidates(dense=dense, sparse=sparse)

    def hits(self, ranked: Sequence[tuple[int, float]]) -> list[Hit]:
        """The chunks of ``ranked`` (chunk id, score) with their text and citation fields, in order."""
        return self.docstore.hits(ranked)

    def chunk_vectors(self, chunk_ids: Sequence[int]) -> np.ndarray:
        """The stored embeddings of ``chunk_ids`` (one row each, in order)."""
        return self.docstore.vectors_for(chunk_ids, self.manifest.dimension)

    def _stored_vectors(self, chunk_ids: np.ndarray) -> np.ndarray:
        """:data:`~rag_app.store.vector_protocol.VectorSource` of the docstore, for ``refine``."""
        return self.chunk_vectors(chunk_ids.tolist())

    def stats(self) -> dict[str, Any]:
        """Counts of what the index serves, sizes, build settings (``index stats``, ``GET /indexes``).

        Documents and chunks come from the docstore, vectors from the FAISS index searches use
        (rebuilt in memory when the files on disk are stale), never from the manifest's copy.
        ``derived_files_current`` is false while the FAISS/BM25 files lag behind the docstore.
        """
        db = self.docstore
        for _ in range(3):  # a writer may commit between loading and counting: count again
            self._ensure_loaded()  # what searches use (rebuilt in memory when the files are stale)
            with self._lock:
                served, vectors = self._loaded_generation, self._vectors
            with db.snapshot():
                docs, chunks = db.counts()
                generation = db.generation
                rows = db.conn.execute("SELECT format, COUNT(*) FROM documents GROUP BY format")
                formats: dict[str, int] = {row[0]: row[1] for row in rows}
            if generation == served:
                break
        ntotal = vectors.ntotal if vectors is not None else 0
        m = self.manifest
        return {
            "index": str(self.folder),
            "documents": docs,
            "chunks": chunks,
            "vectors": ntotal,
            "derived_files_current": m.generation == generation,
            "formats": formats,
            "embedding_model": m.embedding_model,
            "embedding_model_id": m.embedding_model_id,
            "dimension": m.dimension,
            "metric": m.metric,
            "index_type": m.index_type,
            "index_params": m.index_params,
            "chunk_tokens": m.chunk_tokens,
            "overlap_tokens": m.overlap_tokens,
            "schema_version": m.schema_version,
            "generation": generation,
            "created_at": m.created_at,
            "updated_at": m.updated_at,
            "size_bytes": _folder_size(self.folder),
        }

    def writer(self, index_type: str | IndexSettings = "auto", *, wait: float = 0.0) -> IndexWriter:
        """The one writer of this index, building the vector index ``index_type`` (a kind, ``auto``,
        or the ``index`` settings: kind and parameters).

        Waits up to ``wait`` seconds for another writer (process or thread) to finish, then raises
        :class:`IndexLockedError`.
        """
        return IndexWriter(self, index_type, wait=wait)

    def close(self) -> None:
        if isinstance(self._vectors, milvus.MilvusIndex):  # its connection, a milvus-lite server
            with self._lock:
                self._vectors.close()
                self._vectors, self._loaded_generation = None, -1
        store = getattr(self._local, "docstore", None)
        if store is not None:
            store.close()
            self._local.docstore = None
