"""Ingest on a Ray cluster: hash on the driver, load and chunk as Ray Data tasks, embed on an actor pool.

The driver discovers the files and hashes their contents under the index's writer lock, so
unchanged files are skipped before anything reaches the cluster. The changed ones go through
``map_batches``: loading and chunking as tasks, embedding on a pool of actors that each hold one
embedder. The results are written as Parquet shards to a staging folder, and the driver then
merges them into the index in discovery order, through the same :class:`IndexWriter` (one SQLite
transaction a batch, then FAISS, BM25 and the manifest written atomically) as a local ingest. A
failure or a ``kill -9`` before the merge leaves the index as it was; the staging folder left
behind is removed by the next Ray ingest of that index.

Needs the ``ray`` extra (``pip install 'rag-app[ray]'``); ``ray`` is imported only here, when called.
On a cluster of several machines every node needs ``rag-app`` installed, and ``staging`` must be
a folder or URI (``s3://...``) that the workers and the driver both reach.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexes.chunking import Chunker
from indexes.discovery import content_hash, source_name
from indexes.ingest_steps import (
    commit,
    discover_files,
    make_chunker,
    open_or_create,
    open_writer,
    prune_missing,
    read_and_chunk,
    record_failure,
    unchanged,
    unreadable,
)
from indexes.loaders import LoadLimits, load_document
from indexes.pipeline import BATCH_CHUNKS, text_hash
from rag_app.documents import Chunk
from rag_app.embeddings.base import Embedder
from rag_app.errors import ConfigError, IngestError
from rag_app.ingest import LOCAL_RAY, IngestReport, ProgressCallback
from rag_app.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

    from rag_app.store.index import IndexWriter

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rag-app[ray]'"
STAGING_PREFIX = ".ray-staging-"
"""Name prefix of the staging folders made inside the index folder (when ``staging`` is unset)."""
FILES_PER_TASK = 16
"""Files one load-and-chunk task takes."""
CONNECT_TIMEOUT_S = 10.0
"""How long a cluster address may take to accept a TCP connection before the ingest gives up."""
DOCS_PER_EMBED_CALL = 8
"""Documents one actor embeds per call (all their chunks, in ``embedding.batch_size`` batches)."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray ingest runs."""

    address: str = LOCAL_RAY
    """A cluster address for ``ray.init(address=...)`` (``auto``, ``ray://host:10001``), or
    :data:`~rag_app.ingest.LOCAL_RAY` to start Ray on this machine. An initialised Ray is used as it is."""
    num_cpus: int | None = None
    """CPUs of a Ray started here (unset: all of them)."""
    actors: int | None = None
    """Embedding actors (unset: the cluster's CPUs less one, at least one)."""
    cpus_per_actor: float = 1.0
    """CPUs each actor reserves; its embedder runs that many threads unless ``embedding.threads`` is set."""
    retries: int = 3
    """Restarts of an embedding actor whose process died, and retries of the call it was running,
    before the ingest fails (Ray's own default is to retry forever). Load-and-chunk tasks lost with
    their worker are retried as Ray does by default (3 times)."""
    staging: str | None = None
    """Folder or URI under which each run writes its shards to a new sub-folder, removed after the merge
    (unset: the index folder)."""
    embedder_factory: Callable[[], Embedder] | None = None
    """Builds each actor's embedder (unset: :func:`rag_app.embeddings.create_embedder` on the settings).
    It must be picklable, and build the same model as the driver's embedder."""


@dataclass
class RayStats:
    """Where a Ray ingest spent its time (for the benchmark)."""

    actors: int = 0
    files_sent: int = 0
    driver_seconds: float = 0.0
    """Discovery and content hashing on the driver."""
    cluster_seconds: float = 0.0
    """Load, chunk, embed and write the shards."""
    merge_seconds: float = 0.0
    """Reading the shards and committing them (SQLite, FAISS, BM25, manifest)."""
    embed_seconds: float = 0.0
    """Seconds the actors spent embedding, summed over actors."""
    chunks_embedded: int = 0
    staging: str = ""


def import_ray() -> Any:
    """``ray`` with ``ray.data``, or a :class:`ConfigError` naming the extra to install."""
    try:
        import ray
        import ray.data  # the Data library comes with the extra ray[data]
    except ImportError as exc:
        raise ConfigError(
            f"ingesting through Ray needs Ray Data ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    return ray


def ingest(
    paths: Sequence[str | Path],
    index_dir: str | Path,
    settings: Settings,
    embedder: Embedder,
    options: RayOptions | None = None,
    *,
    prune: bool = False,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
    wait: float | None = None,
    stats: RayStats | None = None,
) -> IngestReport:
    """:func:`indexes.pipeline.ingest` with the work done on a Ray cluster: the same report and index.

    ``stats``, when given, is filled in with where the time went. Raises :class:`IngestError` when
    no path exists or the cluster fails (the index is then unchanged), :class:`ConfigError` when
    Ray is not installed or ``index.redact_pii`` is on.
    """
    options = options or RayOptions()
    ray = import_ray()
    if settings.index.redact_pii:
        raise ConfigError("index.redact_pii (--redact-pii) is not supported with --ray yet; ingest locally")
    factory = options.embedder_factory or partial(_settings_embedder, settings, options.cpus_per_actor)
    remote = factory()  # cheap (weights load on first use): the actors' model must be the driver's
    if remote.model_id != embedder.model_id or remote.dimension != embedder.dimension:
        raise ConfigError(
            f"the Ray actors would embed with {remote.model_id} ({remote.dimension} dimensions) but this "
            f"index is written with {embedder.model_id} ({embedder.dimension}): set embedding.model to it"
        )
    started = time.perf_counter()
    stats = stats if stats is not None else RayStats()
    report = IngestReport(index=str(index_dir))
    files = discover_files(paths, settings, report)
    store = open_or_create(index_dir, settings, embedder)
    with open_writer(store, settings, wait) as writer:
        _remove_stale_staging(store.folder)
        items = _changed_files(files, writer, report, on_progress)
        stats.files_sent = len(items)
        stats.driver_seconds = time.perf_counter() - started
        if items:
            parent = options.staging.rstrip("/") if options.staging else str(store.folder.resolve())
            staging = f"{parent}/{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
            stats.staging = staging
            started_here = _connect(ray, options)
            try:
                tick = time.perf_counter()
                stats.actors = _run_on_cluster(
                    ray, items, staging, settings, embedder, factory, options, progress
                )
                stats.cluster_seconds = time.perf_counter() - tick
                tick = time.perf_counter()
                _merge(staging, writer, report, stats, embedder.dimension)
                stats.merge_seconds = time.perf_counter() - tick  # the FAISS/BM25 build follows at exit
            finally:
                if started_here:
                    ray.shutdown()
                _remove_staging(staging)
        if prune:
            prune_missing(paths, files, writer, report)
        tick = time.perf_counter()
    stats.merge_seconds += time.perf_counter() - tick
    store.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _settings_embedder(settings: Settings, cpus: float) -> Embedder:
    """The embedder ``settings`` name, running as many threads as its actor has CPUs."""
    from rag_app.embeddings import create_embedder

    if settings.embedding.threads:
        return create_embedder(settings)
    local = settings.model_copy(deep=True)
    local.embedding.threads = max(1, math.floor(cpus))
    return create_embedder(local)


def _connect(ray: Any, options: RayOptions) -> bool:
    """Join the cluster ``options`` names (or start Ray here); True when this call started Ray."""
    if ray.is_initialized():
        return False
    if options.address != LOCAL_RAY:
        _check_reachable(options.address)
    try:
        if options.address == LOCAL_RAY:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report
            ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=options.address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray" if options.address == LOCAL_RAY else f"the Ray cluster at {options.address}"
        raise IngestError(f"could not start or reach {where}: {exc}; the index is unchanged") from exc
    return True


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nothing listens on: ``ray.init`` would
    keep retrying for minutes. Other addresses (``auto``) are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise IngestError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); the index is unchanged"
        ) from None


def _changed_files(
    files: list[Path], writer: IndexWriter, report: IngestReport, on_progress: ProgressCallback | None
) -> list[dict[str, Any]]:
    """The files whose content changed since the last ingest, as rows for the cluster (in order)."""
    items: list[dict[str, Any]] = []
    for done, path in enumerate(files, start=1):
        source = source_name(path)
        if on_progress is not None:
            on_progress(done, report.files_seen, source)
        try:
            stat = path.stat()
            digest = content_hash(path)
        except OSError as exc:
            record_failure(report, str(path), unreadable(exc))
            continue
        if unchanged(writer, source, digest, report):
            continue
        items.append(
            {
                "order": done,
                "path": os.fsencode(path),
                "source": source,
                "digest": digest,
                "size": stat.st_size,
                "mtime": stat.st_mtime,
            }
        )
    return items


def _run_on_cluster(
    ray: Any,
    items: list[dict[str, Any]],
    staging: str,
    settings: Settings,
    embedder: Embedder,
    factory: Callable[[], Embedder],
    options: RayOptions,
    progress: bool,
) -> int:
    """Load, chunk and embed ``items`` on the cluster into Parquet shards under ``staging``.

    Returns the number of embedding actors.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = options.actors or max(1, cpus - 1)
    if actors * options.cpus_per_actor + 1 > cpus:
        raise ConfigError(
            f"{actors} embedding actors of {options.cpus_per_actor:g} CPU leave none of the cluster's "
            f"{cpus} CPUs for loading and chunking: use fewer actors, or a Ray with more CPUs (2 at least)"
        )
    blocks = max(1, min(len(items), math.ceil(len(items) / FILES_PER_TASK)))
    chunker = make_chunker(settings, embedder)
    try:
        with warnings.catch_warnings():
            # Ray 2.60 deprecates **ray_remote_args but names no parameter for actor restarts yet
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", category=DeprecationWarning)
            (
                ray.data.from_items(items, override_num_blocks=blocks)
                .map_batches(
                    load_and_chunk,
                    batch_format="pyarrow",
                    batch_size=FILES_PER_TASK,
                    fn_kwargs={"chunker": chunker, "limits": LoadLimits.from_settings(settings)},
                    num_cpus=1,
                )
                .map_batches(
                    EmbedActor,
                    batch_format="pyarrow",
                    batch_size=DOCS_PER_EMBED_CALL,
                    fn_constructor_kwargs={"factory": factory, "batch_size": settings.embedding.batch_size},
                    compute=ray.data.ActorPoolStrategy(size=actors),
                    num_cpus=options.cpus_per_actor,
                    max_restarts=options.retries,
                    max_task_retries=options.retries,
                )
                .write_parquet(staging)
            )
    except Exception as exc:  # Ray wraps worker deaths and task errors in many types
        raise IngestError(
            f"the Ray ingest failed on the cluster ({type(exc).__name__}: {_first_line(exc)}); "
            "the index is unchanged"
        ) from exc
    return actors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def load_and_chunk(batch: pa.Table, *, chunker: Chunker, limits: LoadLimits) -> pa.Table:
    """A Ray Data task: load and chunk each file of ``batch`` (a file that fails: its reason in ``error``)."""
    import pyarrow as pa

    rows = batch.to_pylist()
    out: dict[str, list[Any]] = {"format": [], "metadata": [], "chunks": [], "error": []}
    for row in rows:
        load = partial(load_document, Path(os.fsdecode(row["path"])), limits=limits)
        read = read_and_chunk(row["source"], load, chunker)
        document, chunks = (None, []) if isinstance(read, str) else read
        out["format"].append(document.format if document is not None else "")
        out["metadata"].append(json.dumps(document.metadata if document is not None else {}, default=str))
        out["chunks"].append(json.dumps([_chunk_row(c) for c in chunks]))
        out["error"].append(source_name(read) if isinstance(read, str) else None)
    table = batch.drop_columns(["path"])
    for name, values in out.items():
        table = table.append_column(name, pa.array(values, pa.string()))
    return table


def _chunk_row(chunk: Chunk) -> list[Any]:
    return [chunk.text, chunk.start, chunk.end, chunk.page, list(chunk.heading_path), chunk.ordinal]


def _chunk(row: list[Any]) -> Chunk:
    text, start, end, page, heading_path, ordinal = row
    return Chunk(text, start, end, page, tuple(heading_path), ordinal)


class EmbedActor:
    """A Ray Data actor holding one embedder: adds each document's vectors (float32 bytes) to the batch."""

    def __init__(self, factory: Callable[[], Embedder], batch_size: int) -> None:
        self.embedder = factory()
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        texts: dict[str, int] = {}  # unique chunk texts of the batch, in order
        per_doc: list[list[str]] = []
        for chunks in batch.column("chunks").to_pylist():
            doc_texts = [row[0] for row in json.loads(chunks)]
            per_doc.append(doc_texts)
            for text in doc_texts:
                texts.setdefault(text, len(texts))
        started = time.perf_counter()
        vectors = (
            self.embedder.embed_documents(list(texts), batch_size=self.batch_size)
            if texts
            else np.zeros((0, self.embedder.dimension), dtype=np.float32)
        )
        seconds = time.perf_counter() - started
        blobs = [
            np.ascontiguousarray(vectors[[texts[t] for t in doc]], dtype=np.float32).tobytes()
            for doc in per_doc
        ]
        # the batch's embedding time and unique texts, on its first row (the merge sums them)
        first = [1.0 if i == 0 else 0.0 for i in range(batch.num_rows)]
        table = batch.append_column("vectors", pa.array(blobs, pa.binary()))
        table = table.append_column("embed_seconds", pa.array([seconds * f for f in first], pa.float64()))
        return table.append_column("embedded", pa.array([int(len(texts) * f) for f in first], pa.int64()))


def _shards(staging: str) -> Iterator[dict[str, Any]]:
    """The rows of the shards, in discovery order."""
    import pyarrow.dataset as ds

    table = ds.dataset(staging, format="parquet").to_table()
    yield from table.sort_by("order").to_pylist()


def _merge(staging: str, writer: IndexWriter, report: IngestReport, stats: RayStats, dimension: int) -> None:
    """Commit the shards' documents in discovery order, in batches of about :data:`BATCH_CHUNKS` chunks."""
    batch: list[dict[str, Any]] = []
    pending = 0
    for row in _shards(staging):
        stats.embed_seconds += row["embed_seconds"]
        stats.chunks_embedded += row["embedded"]
        if row["error"] is not None:
            record_failure(report, row["source"], row["error"])
            continue
        chunks = [_chunk(c) for c in json.loads(row["chunks"])]
        vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(len(chunks), dimension)
        batch.append(
            {
                "source": row["source"],
                "content_hash": row["digest"],
                "format": row["format"],
                "size": row["size"],
                "mtime": row["mtime"],
                "metadata": json.loads(row["metadata"]),
                "chunks": chunks,
                "text_hashes": [text_hash(c.text) for c in chunks],
                "vectors": vectors,
            }
        )
        pending += len(chunks)
        if pending >= BATCH_CHUNKS:
            commit(batch, writer, report)
            batch, pending = [], 0
    commit(batch, writer, report)
    report.chunks_embedded += stats.chunks_embedded


def _remove_staging(staging: str) -> None:
    import pyarrow.fs

    try:
        fs, root = pyarrow.fs.FileSystem.from_uri(staging)
        fs.delete_dir(root)
    except (OSError, ValueError) as exc:  # nothing written, or already gone
        log.debug("staging %s not removed: %s", staging, exc)


def _remove_stale_staging(folder: Path) -> None:
    """Remove staging folders a killed Ray ingest left in the index folder (we hold the writer lock)."""
    for path in folder.glob(f"{STAGING_PREFIX}*"):
        log.info("removing %s, left by an interrupted Ray ingest", path)
        shutil.rmtree(path, ignore_errors=True)
