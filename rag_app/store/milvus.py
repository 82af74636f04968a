"""Milvus as a vector backend: :class:`MilvusIndex`, a :class:`~rag_app.store.vector_protocol.VectorIndex`.

Milvus holds the vectors and their integer chunk ids, nothing else: texts, offsets and a copy of
every vector stay in the SQLite docstore, the source of truth. Where it runs (milvus-lite inside
the index folder, or a server named by ``index.milvus_uri`` with the token in
``$RAG_APP_MILVUS_TOKEN``) and how it is reached is :mod:`rag_app.store.milvus_connection`'s.

The collection is ``index.milvus_collection``, or one named after the index folder
(:func:`default_collection`). The writer changes Milvus only after the docstore has committed
(:meth:`rag_app.store.writer.IndexWriter.finish`); an index whose manifest lags behind the docstore
(a crash between the two stores) is repaired by :func:`reconcile`: ids Milvus holds that the
docstore does not are deleted, chunks it lacks are upserted from the docstore's vectors.

For benchmarks (``bench/scale.py``), :func:`connect` gives an index outside any index folder::

    index = connect("/tmp/bench.milvus.db", "bench", dimension=384)
    index.add(ids, vectors)
    index.search(query, k=10)  # [(id, inner product)], best first; time this call
    index.close()

pymilvus is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rag_app.errors import IndexMismatchError
from rag_app.store.fsutil import atomic_write_text
from rag_app.store.milvus_connection import (
    DEFAULT_TIMEOUT_S,
    LITE_NAME,
    TOKEN_ENV,
    MilvusCollectionMissingError,
    MilvusUnavailableError,
    close_client,
    connect_uri,
    default_collection,
    failures,
    is_lite,
    lite_servers,
    open_client,
    quiet_lite_server,
    reason,
    recorded_uri,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from rag_app.settings import IndexSettings
    from rag_app.store.docstore import Docstore
    from rag_app.store.manifest import Manifest
    from rag_app.store.vector_protocol import IndexSpec

__all__ = [
    "BATCH",
    "DEFAULT_TIMEOUT_S",
    "DESCRIPTION",
    "ID_FIELD",
    "KIND",
    "LITE_NAME",
    "MILVUS_INDEX_TYPES",
    "POINTER_SUFFIX",
    "TOKEN_ENV",
    "VECTOR_FIELD",
    "WINDOW",
    "MilvusCollectionMissingError",
    "MilvusIndex",
    "MilvusUnavailableError",
    "connect",
    "connect_uri",
    "default_collection",
    "is_lite",
    "lite_servers",
    "open_for_writer",
    "reconcile",
    "recorded_uri",
    "same_collection",
]

log = logging.getLogger(__name__)

KIND = "milvus"
POINTER_SUFFIX = ".milvus.json"
"""Ending of the small file naming the Milvus collection of one generation (the manifest's
``vectors_file``, as ``vectors.<generation>.faiss`` is for FAISS)."""
DESCRIPTION = "rag-app vectors by docstore chunk id"
"""Description of the collections this module creates. An existing collection is used only if its
fields are exactly ``id`` (primary key) and ``vector`` and its description is this or empty
(milvus-lite keeps none)."""
ID_FIELD = "id"
VECTOR_FIELD = "vector"
WINDOW = 16_384
"""Ids listed per query while reconciling (Milvus's largest query limit)."""
BATCH = 2_000
"""Rows per upsert or delete request."""
MILVUS_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}
"""``index.index_type`` -> the Milvus index a new collection gets (``auto``: FLAT, exact, on
milvus-lite; AUTOINDEX on a server)."""


# -- the index ---------------------------------------------------------------------------------
class MilvusIndex:
    """Vectors in a Milvus collection (``id`` INT64 primary key, ``vector`` FLOAT_VECTOR, IP metric).

    Made by :func:`connect` (or the protocol's :meth:`new` / :meth:`load`); :meth:`close` (or
    garbage collection) gives back the connection and, for milvus-lite, the in-process server.
    """

    kind: ClassVar[str] = KIND
    updatable: ClassVar[bool] = True

    def __init__(
        self,
        client: MilvusClient,
        uri: str,
        collection: str,
        dimension: int,
        index_type: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        lite_path: str | None = None,
    ) -> None:
        self.client = client
        self.uri = uri
        """As recorded (a relative lite path or a server URI without credentials)."""
        self.collection = collection
        self.dimension = dimension
        self.index_type = index_type
        self.timeout = timeout
        self._finalizer = weakref.finalize(self, close_client, client, lite_path)

    @property
    def params(self) -> dict[str, Any]:
        """What the manifest records as ``index_params``."""
        return {
            "uri": self.uri,
            "collection": self.collection,
            "index_type": self.index_type,
            "metric_type": "IP",
        }

    # -- making one --------------------------------------------------------------------------
    @classmethod
    def default_params(cls, n_vectors: int) -> dict[str, Any]:
        """Milvus-lite in the working folder under a fixed collection name (benchmarks pass their own)."""
        return {"uri": LITE_NAME, "collection": "rag_app"}

    @classmethod
    def new(cls, spec: IndexSpec, dimension: int, training: np.ndarray | None = None) -> MilvusIndex:
        """The collection of ``spec.params`` (``uri``, ``collection``), created when absent."""
        return connect(
            spec.params.get("uri", LITE_NAME),
            spec.params.get("collection", "rag_app"),
            dimension,
            index_type=spec.params.get("index_type"),
        )

    @classmethod
    def load(cls, path: Path) -> MilvusIndex:
        """The collection named by a file :meth:`save` wrote (a lite path is relative to its folder)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            uri, collection, dimension = data["uri"], data["collection"], int(data["dimension"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} does not name a Milvus collection: {exc}") from None
        return connect(
            uri,
            collection,
            dimension,
            folder=path.parent,
            index_type=data.get("index_type"),
            create=False,
        )

    def save(self, path: Path) -> None:
        """Seal what was written (a flush) and write which collection this is to ``path``.

        Milvus keeps the vectors itself. Without the flush, new vectors stay in growing segments,
        which milvus-lite searches by brute force with deletes applied row by row: 0.75 s a query
        at 10k vectors against 0.04 s once sealed (measured, bench/README "Scale: vectors")."""
        with self._request("flush"):
            self.client.flush(self.collection, timeout=self.timeout)
        atomic_write_text(path, json.dumps({**self.params, "dimension": self.dimension}, indent=2) + "\n")

    def to_device(self, use_gpu: str = "auto") -> MilvusIndex:
        """Milvus places its own index; this one as is."""
        return self

    def close(self) -> None:
        """Give back the connection (and a milvus-lite server nobody else in this process uses)."""
        self._finalizer()

    # -- the protocol ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        try:
            yield
        except failures() as exc:
            raise MilvusUnavailableError(
                f"Milvus at {self.uri} failed to {what} in collection {self.collection!r}: "
                f"{reason(exc)}; check that the server is up (index.milvus_uri) and ${TOKEN_ENV}"
            ) from None

    @property
    def ntotal(self) -> int:
        with self._request("count vectors"):
            rows = self.client.query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self.timeout
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or overwrite the vectors of ``ids`` (an upsert: adding twice is harmless)."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) and vectors.shape[1] != self.dimension:
            raise IndexMismatchError(
                f"vectors of {vectors.shape[1]} dimensions do not fit Milvus collection "
                f"{self.collection!r} ({self.dimension} dimensions)"
            )
        for start in range(0, len(ids), BATCH):
            rows = [
                {ID_FIELD: int(i), VECTOR_FIELD: v}
                for i, v in zip(ids[start : start + BATCH], vectors[start : start + BATCH], strict=True)
            ]
            with self._request("upsert vectors"):
                self.client.upsert(self.collection, rows, timeout=self.timeout)

    def remove(self, ids: np.ndarray) -> None:
        """Delete the vectors of ``ids`` (unknown ids are ignored)."""
        values = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        for start in range(0, len(values), BATCH):
            with self._request("delete vectors"):
                self.client.delete(self.collection, ids=values[start : start + BATCH], timeout=self.timeout)

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-``k`` (id, inner product) for one query vector, optionally only among ``allowed_ids``."""
        if k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        where = ""
        if allowed_ids is not None:
            where = f"{ID_FIELD} in [{','.join(str(int(i)) for i in allowed_ids)}]"
        vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        with self._request("search"):
            result = self.client.search(
                self.collection,
                data=[vector],
                limit=min(k, WINDOW),
                filter=where,
                output_fields=[ID_FIELD],
                anns_field=VECTOR_FIELD,
                search_params={"metric_type": "IP"},
                timeout=self.timeout,
            )
        return [(int(hit["id"]), float(hit["distance"])) for hit in result[0]]

    # -- for reconciling ---------------------------------------------------------------------
    def ids_where(self, where: str, limit: int = WINDOW) -> np.ndarray:
        """Up to ``limit`` ids matching the filter expression ``where``."""
        with self._request("list ids"):
            rows = self.client.query(
                self.collection, filter=where, output_fields=[ID_FIELD], limit=limit, timeout=self.timeout
            )
        return np.fromiter((row[ID_FIELD] for row in rows), dtype=np.int64, count=len(rows))


def connect(
    uri: str,
    collection: str,
    dimension: int,
    *,
    folder: Path | None = None,
    index_type: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    create: bool = True,
) -> MilvusIndex:
    """The Milvus collection ``collection`` at ``uri`` for vectors of ``dimension``.

    A lite ``uri`` relative to ``folder`` is resolved there. The collection is created when absent
    (with ``index_type``, else FLAT on milvus-lite and AUTOINDEX on a server) unless ``create`` is
    false. Raises :class:`MilvusUnavailableError` when Milvus cannot be reached within ``timeout``
    seconds, :class:`IndexMismatchError` when the collection holds vectors of another dimension.
    Requests to a server wait up to ``timeout`` seconds too; milvus-lite runs in this process, so
    its requests have no deadline (on a busy machine they can take longer than a network timeout).
    """
    client, lite_path = open_client(connect_uri(uri, folder), timeout)
    requests = None if lite_path is not None else timeout
    try:
        kind = _open_collection(client, uri, collection, dimension, index_type, requests, create)
    except BaseException:
        close_client(client, lite_path)
        raise
    return MilvusIndex(client, uri, collection, dimension, kind, timeout=requests, lite_path=lite_path)


def _open_collection(
    client: MilvusClient,
    uri: str,
    collection: str,
    dimension: int,
    index_type: str | None,
    timeout: float | None,
    create: bool,
) -> str:
    """Check (or create) the collection; returns its vector index type."""
    from pymilvus import DataType, MilvusClient

    where = f"Milvus collection {collection!r} at {uri}"
    try:
        if client.has_collection(collection, timeout=timeout):
            info = client.describe_collection(collection, timeout=timeout)
            fields = {field["name"]: field for field in info.get("fields", [])}
            ours = set(fields) == {ID_FIELD, VECTOR_FIELD} and fields[ID_FIELD].get("is_primary")
            if not ours or info.get("description") not in ("", DESCRIPTION):  # milvus-lite keeps none
                raise IndexMismatchError(
                    f"{where} was not made by rag-app (it is not just an {ID_FIELD!r} primary key and "
                    f"a {VECTOR_FIELD!r} vector); set index.milvus_collection to another name"
                )
            dim = int(fields[VECTOR_FIELD].get("params", {}).get("dim", 0))
            if dim != dimension:
                raise IndexMismatchError(
                    f"{where} holds {dim}-dimension vectors but the index's embedder gives {dimension}; "
                    "set index.milvus_collection to a new name, or drop that collection and re-ingest"
                )
            client.load_collection(collection, timeout=timeout)
            described = client.describe_index(collection, VECTOR_FIELD, timeout=timeout)
            return str((described or {}).get("index_type") or index_type or "AUTOINDEX")
        if not create:
            raise MilvusCollectionMissingError(f"{where} does not exist")
        kind = index_type or ("AUTOINDEX" if not is_lite(uri) else "FLAT")
        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description=DESCRIPTION
        )
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name=VECTOR_FIELD, index_type=kind, metric_type="IP")
        with quiet_lite_server(uri):
            client.create_collection(
                collection,
                schema=schema,
                index_params=index_params,
                consistency_level="Strong",
                timeout=timeout,
            )
        return kind
    except failures() as exc:
        raise MilvusUnavailableError(
            f"{where}: {reason(exc)}; check that the server is up and ${TOKEN_ENV} grants access"
        ) from None


# -- for the writer of an index folder ---------------------------------------------------------
def open_for_writer(folder: Path, manifest: Manifest, settings: IndexSettings | None) -> MilvusIndex | None:
    """The collection a writer of the index folder ``folder`` syncs to; None when FAISS serves it.

    ``settings`` None keeps what the manifest records. Unset ``milvus_uri`` / ``milvus_collection``
    keep the recorded ones too, else take the defaults (milvus-lite inside the folder, a collection
    named after it). Connected now, so an unreachable Milvus or a collection of another dimension
    fails before anything in the index changes.
    """
    on_milvus = manifest.backend == KIND
    current = manifest.index_params if on_milvus else {}
    if settings is None:
        if not on_milvus:
            return None
        uri, collection, timeout, requested = current.get("uri", ""), "", DEFAULT_TIMEOUT_S, "auto"
    elif settings.backend != KIND:
        return None
    else:
        uri, collection = settings.milvus_uri, settings.milvus_collection
        timeout, requested = settings.milvus_timeout_s, settings.index_type
    uri = recorded_uri(uri or current.get("uri", ""))
    collection = collection or current.get("collection") or default_collection(folder)
    return connect(
        uri,
        collection,
        manifest.dimension,
        folder=folder,
        index_type=MILVUS_INDEX_TYPES.get(requested),
        timeout=timeout,
    )


def same_collection(index: MilvusIndex, manifest: Manifest) -> bool:
    """Whether the manifest records ``index``'s collection as the one serving the index."""
    params = manifest.index_params
    return (
        manifest.backend == KIND
        and params.get("uri") == index.uri
        and params.get("collection") == index.collection
    )


def reconcile(index: MilvusIndex, db: Docstore, dimension: int) -> tuple[int, int]:
    """Make Milvus hold exactly the docstore's chunk ids; returns (ids deleted, ids upserted).

    Walks the id range in windows of :data:`WINDOW`: ids only Milvus has are deleted, chunks it
    lacks are upserted from the vectors the docstore keeps (nothing is embedded again).
    """
    row = db.conn.execute("SELECT MAX(id) FROM chunks").fetchone()
    top = int(row[0]) if row and row[0] is not None else 0
    deleted = upserted = 0
    for low in range(0, top + 1, WINDOW):
        high = low + WINDOW
        want = np.fromiter(
            (r[0] for r in db.conn.execute("SELECT id FROM chunks WHERE id >= ? AND id < ?", (low, high))),
            dtype=np.int64,
        )
        have = index.ids_where(f"{ID_FIELD} >= {low} and {ID_FIELD} < {high}")
        extra = np.setdiff1d(have, want)
        missing = np.setdiff1d(want, have)
        if len(extra):
            index.remove(extra)
        if len(missing):
            index.add(missing, db.vectors_for(missing.tolist(), dimension))
        deleted, upserted = deleted + len(extra), upserted + len(missing)
    while True:  # ids past the docstore's range (or below it)
        extra = index.ids_where(f"{ID_FIELD} >= {top + 1} or {ID_FIELD} < 0")
        if not len(extra):
            break
        index.remove(extra)
        deleted += len(extra)
    log.info(
        "Milvus collection %r reconciled with the docstore: %d stray ids deleted, %d chunks upserted",
        index.collection,
        deleted,
        upserted,
    )
    return deleted, upserted
