"""Incremental ingest: discover → hash → load → chunk → embed (cached) → commit, in batches.

Unchanged files (same content hash) cost no loading and no embedding; changed files replace
their chunks, and only chunk texts never embedded before reach the embedder; ``prune``
removes documents whose files are gone. Each batch is one SQLite transaction, so a crash
keeps every batch committed before it and loses nothing already indexed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from rag_app.documents import Chunk, LoadedDocument
from rag_app.embeddings.base import Embedder
from rag_app.ingest import IngestReport as IngestReport  # re-exported
from rag_app.ingest import ProgressCallback as ProgressCallback
from rag_app.settings import Settings
from rag_app.store.index import IndexWriter

if TYPE_CHECKING:
    from indexes.redaction import Redactor

BATCH_CHUNKS = 1024
"""Chunks embedded and committed together."""


@dataclass
class _Pending:
    source: str
    digest: str
    size: int
    mtime: float
    document: LoadedDocument
    chunks: list[Chunk]
    hashes: list[str]


def text_hash(text: str) -> str:
    """Key of the embedding cache: a chunk's text, hashed."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ingest(
    paths: Sequence[str | Path],
    index_dir: str | Path,
    settings: Settings,
    embedder: Embedder,
    *,
    prune: bool = False,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
    wait: float | None = None,
) -> IngestReport:
    """Ingest files and folders into the index at ``index_dir`` (created if needed).

    Raises :class:`IngestError` when no path exists; per-file problems are reported in the
    returned :class:`IngestReport`, and the rest of the batch goes on. ``on_progress(done, total,
    source)`` is called as each file is taken up (a UI's progress bar; ``progress`` is tqdm's).
    ``wait``: seconds to wait for another writer of the index (unset: ``index.lock_wait_s``), then
    :class:`IndexLockedError`. A file whose name is not valid UTF-8 is indexed under
    :func:`indexes.discovery.source_name` of its path.
    """
    started = time.perf_counter()
    report = IngestReport(index=str(index_dir))
    files = discover_files(paths, settings, report)
    store = open_or_create(index_dir, settings, embedder)
    with open_writer(store, settings, wait) as writer:
        candidates = _file_candidates(files, report, LoadLimits.from_settings(settings))
        _ingest(
            candidates,
            writer,
            make_chunker(settings, embedder),
            embedder,
            settings,
            report,
            progress,
            on_progress,
        )
        if prune:
            prune_missing(paths, files, writer, report)
    store.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


@dataclass
class _Candidate:
    """A document to ingest if its content changed: where it is and how to load it."""

    source: str
    size: int
    mtime: float
    digest: Callable[[], str]
    load: Callable[[], LoadedDocument]


def ingest_documents(
    documents: Iterable[LoadedDocument],
    index_dir: str | Path,
    settings: Settings,
    embedder: Embedder,
    *,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
    wait: float | None = None,
) -> IngestReport:
    """Ingest documents built in memory (``source`` is their key: same source, same document).

    A document whose text is unchanged since the last ingest costs nothing. ``wait`` as in
    :func:`ingest`.
    """
    started = time.perf_counter()
    report = IngestReport(index=str(index_dir))
    docs = list(documents)
    report.files_seen = len(docs)
    candidates = [
        _Candidate(
            source=source_name(doc.source),
            size=len(doc.text.encode("utf-8", "surrogatepass")),
            mtime=0.0,
            digest=partial(_document_digest, doc),
            load=partial(_same, doc),
        )
        for doc in docs
    ]
    store = open_or_create(index_dir, settings, embedder)
    with open_writer(store, settings, wait) as writer:
        _ingest(
            candidates,
            writer,
            make_chunker(settings, embedder),
            embedder,
            settings,
            report,
            progress,
            on_progress,
        )
    store.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _document_digest(doc: LoadedDocument) -> str:
    return text_hash(doc.format + "\0" + doc.text)


def _same(doc: LoadedDocument) -> LoadedDocument:
    return doc


def _file_candidates(files: list[Path], report: IngestReport, limits: LoadLimits) -> Iterator[_Candidate]:
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:
            record_failure(report, str(path), unreadable(exc))
            continue
        yield _Candidate(
            source=source_name(path),
            size=stat.st_size,
            mtime=stat.st_mtime,
            digest=partial(content_hash, path),
            load=partial(load_document, path, limits=limits),
        )


def _ingest(
    candidates: Iterable[_Candidate],
    writer: IndexWriter,
    chunker: Chunker,
    embedder: Embedder,
    settings: Settings,
    report: IngestReport,
    progress: bool,
    on_progress: ProgressCallback | None = None,
) -> None:
    bar = _progress_bar(report.files_seen, progress)
    batch: list[_Pending] = []
    pending_chunks = 0
    redactor = _redactor(settings)
    # redacted before chunking: chunk text, offsets, BM25, vectors all redacted
    prepare = None if redactor is None else partial(redactor.redact, counts=report.pii_redacted)
    for done, item in enumerate(candidates, start=1):
        bar.update(1)
        if on_progress is not None:
            on_progress(done, report.files_seen, item.source)
        try:
            digest = item.digest()
        except OSError as exc:
            record_failure(report, item.source, unreadable(exc))
            continue
        if redactor is not None:  # a redacted copy is not the plain one: switching re-ingests
            digest = "pii:" + digest
        if unchanged(writer, item.source, digest, report):
            continue
        read = read_and_chunk(item.source, item.load, chunker, prepare)
        if isinstance(read, str):
            record_failure(report, item.source, read)
            continue
        document, chunks = read
        hashes = [text_hash(c.text) for c in chunks]
        batch.append(_Pending(item.source, digest, item.size, item.mtime, document, chunks, hashes))
        pending_chunks += len(chunks)
        if pending_chunks >= BATCH_CHUNKS:
            _commit(batch, writer, embedder, settings, report, bar)
            batch, pending_chunks = [], 0
    _commit(batch, writer, embedder, settings, report, bar)
    bar.close()


def _commit(
    batch: list[_Pending],
    writer: IndexWriter,
    embedder: Embedder,
    settings: Settings,
    report: IngestReport,
    bar: Any,
) -> None:
    if not batch:
        return
    all_hashes = [h for item in batch for h in item.hashes]
    cached = writer.cached_vectors(all_hashes)
    todo: dict[str, str] = {}
    for item in batch:
        for chunk, h in zip(item.chunks, item.hashes, strict=True):
            if h not in cached and h not in todo:
                todo[h] = chunk.text
    fresh: dict[str, np.ndarray] = {}
    if todo:
        bar.set_postfix_str(f"embedding {len(todo)} chunks")
        vectors = embedder.embed_documents(list(todo.values()), batch_size=settings.embedding.batch_size)
        fresh = dict(zip(todo.keys(), vectors, strict=True))
    report.chunks_embedded += len(todo)
    report.chunks_reused += len(all_hashes) - len(todo)
    documents = []
    for item in batch:
        vectors = np.stack(
            [fresh[h] if h in fresh else np.frombuffer(cached[h], dtype=np.float32) for h in item.hashes]
        )
        documents.append(
            {
                "source": item.source,
                "content_hash": item.digest,
                "format": item.document.format,
                "size": item.size,
                "mtime": item.mtime,
                "metadata": item.document.metadata,
                "chunks": item.chunks,
                "text_hashes": item.hashes,
                "vectors": vectors,
            }
        )
    commit(documents, writer, report)
    bar.set_postfix_str(f"{report.chunks_added} chunks indexed")


def _redactor(settings: Settings) -> Redactor | None:
    """The PII redactor, warmed up, when ``index.redact_pii`` is on (Presidio is imported only then)."""
    if not settings.index.redact_pii:
        return None
    from indexes.redaction import Redactor

    redactor = Redactor.from_settings(settings)
    redactor.warm_up()  # a missing extra fails here, once, not once per file
    return redactor


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, leave=False)
