"""The single writer of an index folder: docstore transactions, then the derived files and manifest.

:class:`IndexWriter` holds the folder's lock (:data:`LOCK_NAME`) while it lives. Each
:meth:`~IndexWriter.put` / :meth:`~IndexWriter.delete` commits to the docstore;
:meth:`~IndexWriter.finish` then brings the vectors (FAISS file or Milvus collection) and BM25 up
to the committed generation and writes the manifest. Opened by
:meth:`rag_app.store.index.IndexStore.writer`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout

from rag_app.errors import IndexLockedError
from rag_app.store import milvus
from rag_app.store import vectors as vec
from rag_app.store.docstore import DOCSTORE_NAME, Docstore
from rag_app.store.manifest import Manifest, utc_now
from rag_app.store.pq import outgrown
from rag_app.store.sparse import SparseIndex
from rag_app.store.vector_protocol import IndexSpec, VectorIndex

if TYPE_CHECKING:
    from rag_app.settings import IndexSettings
    from rag_app.store.index import IndexStore

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
"""The file in an index folder held by the one process writing (and while creating the folder)."""


class IndexWriter:
    """Changes an index under an exclusive lock. Each :meth:`put`/:meth:`delete` is one transaction.

    :meth:`finish` brings the FAISS and BM25 files up to the committed generation and writes
    the manifest; a crash before that leaves them stale, and readers rebuild them.
    """

    def __init__(self, store: IndexStore, index_type: str | IndexSettings, *, wait: float = 0.0) -> None:
        self.store = store
        if isinstance(index_type, str):
            self.index_type, self.index_overrides = index_type, {}
        else:
            self.index_type, self.index_overrides = index_type.index_type, index_type.vector_params()
        self.wait = max(0.0, float(wait))
        # a lock object of its own: another writer in this process waits like another process would
        self._filelock = FileLock(str(store.folder / LOCK_NAME), timeout=self.wait)
        self.db: Docstore | None = None
        self.added_ids: list[int] = []
        self.added_vectors: list[np.ndarray] = []
        self.removed_ids: list[int] = []
        self.start_generation = 0
        self.settings = None if isinstance(index_type, str) else index_type
        """The ``index`` settings (backend and Milvus target); None keeps the manifest's backend."""
        self.milvus: milvus.MilvusIndex | None = None
        self.resync = False
        """Reconcile Milvus with the docstore at :meth:`finish` even if the manifest looks current."""

    def __enter__(self) -> IndexWriter:
        try:
            self._filelock.acquire()
        except Timeout:
            waited = f" (waited {self.wait:g} s)" if self.wait else ""
            raise IndexLockedError(
                f"another process is writing to the index {self.store.folder}{waited}; wait for it to "
                "finish, or let writers queue (rag-app ingest --wait SECONDS, index.lock_wait_s, "
                "server.ingest_wait_s)"
            ) from None
        self.db = Docstore(self.store.folder / DOCSTORE_NAME)
        self.start_generation = self.db.generation
        try:  # Milvus unreachable or of another dimension: fail before anything changes
            self.milvus = milvus.open_for_writer(
                self.store.folder, Manifest.load(self.store.folder), self.settings
            )
        except BaseException:
            self.db.close()
            self._filelock.release()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            if self.milvus is not None:
                self.milvus.close()
            if self.db is not None:
                self.db.close()
            self._filelock.release()

    @property
    def _db(self) -> Docstore:
        if self.db is None:
            raise RuntimeError("use the writer as a context manager")
        return self.db

    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, bytes]:
        return self._db.cached_vectors(text_hashes)

    def put(self, documents: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Insert or replace documents in one transaction.

        Each dict has the keywords of :meth:`Docstore.replace_document` (``source``,
        ``content_hash``, ``format``, ``size``, ``mtime``, ``metadata``, ``chunks``,
        ``text_hashes``, ``vectors``). Returns (chunks added, chunks removed).
        """
        added_total = removed_total = 0
        with self._db.transaction():
            for doc in documents:
                added, removed = self._db.replace_document(**doc)
                self.added_ids.extend(added)
                self.added_vectors.append(np.asarray(doc["vectors"], dtype=np.float32))
                self.removed_ids.extend(removed)
                added_total += len(added)
                removed_total += len(removed)
            if documents:
                self._db.bump_generation()
        return added_total, removed_total

    def delete(self, sources: Sequence[str]) -> int:
        """Remove documents by source in one transaction; returns chunks removed."""
        removed_total = 0
        with self._db.transaction():
            for source in sources:
                removed = self._db.delete_document(source)
                self.removed_ids.extend(removed)
                removed_total += len(removed)
            if sources:
                self._db.bump_generation()
        return removed_total

    def document(self, source: str) -> Any:
        return self._db.document(source)

    def sources(self) -> set[str]:
        return self._db.sources()

    def finish(self) -> None:
        """Write FAISS, BM25 and the manifest for the committed generation (no-op if nothing changed)."""
        db = self._db
        store = self.store
        generation = db.generation
        manifest = Manifest.load(store.folder)
        on_milvus = self.milvus is not None and milvus.same_collection(self.milvus, manifest)
        same_backend = on_milvus or (self.milvus is None and manifest.backend != milvus.KIND)
        if generation == manifest.generation and manifest.vectors_file and same_backend and not self.resync:
            return
        docs, chunks = db.counts()
        dim = manifest.dimension
        if self.milvus is not None:  # Milvus serves the vectors; a small file names its collection
            index: VectorIndex = self.milvus
            kind, params = milvus.KIND, self._synced_milvus(self.milvus, manifest, on_milvus)
            vectors_file = f"vectors.{generation}{milvus.POINTER_SUFFIX}"
        else:
            spec = vec.choose_spec(chunks, self.index_type, self.index_overrides)
            index, params = self._updated_vectors(manifest, spec, dim, chunks)
            kind, vectors_file = spec.type, f"vectors.{generation}.faiss"
        index.save(store.folder / vectors_file)
        bm25_dir = f"bm25.{generation}"
        tmp_dir = store.folder / f".{bm25_dir}.tmp"
        SparseIndex.build(db.iter_texts()).save(tmp_dir)
        if (store.folder / bm25_dir).exists():
            shutil.rmtree(store.folder / bm25_dir)
        os.replace(tmp_dir, store.folder / bm25_dir)
        manifest.generation = generation
        manifest.vectors_file = vectors_file
        manifest.bm25_dir = bm25_dir
        manifest.backend = milvus.KIND if self.milvus is not None else "faiss"
        manifest.index_type = kind
        manifest.index_params = params
        manifest.documents, manifest.chunks, manifest.vectors = docs, chunks, index.ntotal
        manifest.updated_at = utc_now()
        manifest.save(store.folder)
        self._remove_old_files(vectors_file, bm25_dir)

    def _updated_vectors(
        self, manifest: Manifest, spec: IndexSpec, dim: int, chunks: int
    ) -> tuple[VectorIndex, dict[str, Any]]:
        """The vector index of the committed chunks and the parameters to record for it.

        An updatable index (flat, IVF-PQ) whose file matches the generation we started from is
        updated in place, unless it has outgrown its training (:func:`~rag_app.store.pq.outgrown`) or a build
        parameter set in the settings changed; anything else is rebuilt from the docstore.
        """
        path = self.store.folder / manifest.vectors_file if manifest.vectors_file else None
        old = manifest.index_params
        overrides = self.index_overrides
        changed = any(k in old and old[k] != v for k, v in overrides.items() if k in vec.BUILD_KEYS)
        if (
            vec.backend(spec.type).updatable
            and manifest.index_type == spec.type
            and manifest.generation == self.start_generation
            and path is not None
            and path.is_file()
            and not changed
            and not outgrown(old, chunks)
        ):
            index = vec.load_index(spec.type, path, dim)
            self._apply_changes(index, dim)
            return index, old | {k: v for k, v in overrides.items() if k in old and k in vec.SEARCH_KEYS}
        index = vec.build_index(spec, dim, self._db.iter_vectors(dim))
        return index, vec.recorded_params(index, spec)

    def _synced_milvus(
        self, index: milvus.MilvusIndex, manifest: Manifest, on_milvus: bool
    ) -> dict[str, Any]:
        """Bring ``index`` to the committed chunks; returns the parameters to record for it.

        A collection that held the generation we started from gets this writer's removals and
        additions; any other (new, another collection, a crash since the last sync) is reconciled
        with the whole docstore (:func:`milvus.reconcile`).
        """
        if on_milvus and manifest.generation == self.start_generation and not self.resync:
            self._apply_changes(index, manifest.dimension)
        else:
            deleted, upserted = milvus.reconcile(index, self._db, manifest.dimension)
            if on_milvus and (deleted or upserted):
                log.warning(
                    "Milvus collection %r was behind the docstore (a crash between the two?): "
                    "%d stray ids deleted, %d chunks upserted from the docstore",
                    index.collection,
                    deleted,
                    upserted,
                )
        return index.params

    def _apply_changes(self, index: VectorIndex, dim: int) -> None:
        """Remove this writer's removed chunks from ``index`` and add its added ones still present."""
        if self.removed_ids:
            index.remove(np.asarray(self.removed_ids, dtype=np.int64))
        if self.added_ids:
            ids = np.asarray(self.added_ids, dtype=np.int64)
            live = self._db.vectors_for(self.added_ids, dim)  # drop ids replaced again later
            keep = np.isin(ids, self.removed_ids, invert=True)
            index.add(ids[keep], live[keep])

    def _remove_old_files(self, vectors_file: str, bm25_dir: str) -> None:
        for path in self.store.folder.iterdir():
            name = path.name
            old_vectors = name.endswith((".faiss", milvus.POINTER_SUFFIX)) and name != vectors_file
            if name.startswith("vectors.") and old_vectors and path.is_file():
                path.unlink(missing_ok=True)
            elif name.startswith("bm25.") and name != bm25_dir and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
