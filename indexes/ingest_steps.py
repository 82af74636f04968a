"""The steps a local ingest (:mod:`indexes.pipeline`) and a Ray ingest (:mod:`indexes.ray_ingest`) share.

Both find the files and record what they skip, open the index and its writer, tell an unchanged
file by its content hash, load and chunk a file (a failure is the file's, not the batch's),
commit documents batch by batch and prune the files that are gone; each step is written once,
here, so both paths fill the same :class:`IngestReport` the same way.

    report = IngestReport(index=str(index_dir))
    files = discover_files(paths, settings, report)    # IngestError when no path exists
    store = open_or_create(index_dir, settings, embedder)
    with open_writer(store, settings, wait) as writer:
        ...                                            # unchanged(), read_and_chunk(), commit()
        if prune:
            prune_missing(paths, files, writer, report)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indexes.chunking import Chunker
from indexes.discovery import discover, source_name
from rag_app.documents import Chunk, LoadedDocument
from rag_app.embeddings.base import Embedder, embedder_model_name
from rag_app.errors import DocumentError, IngestError
from rag_app.ingest import IngestReport
from rag_app.settings import Settings
from rag_app.store.index import IndexStore, IndexWriter

log = logging.getLogger(__name__)


def discover_files(paths: Sequence[str | Path], settings: Settings, report: IngestReport) -> list[Path]:
    """The files to ingest under ``paths``; skipped and missing paths are recorded in ``report``.

    Raises :class:`IngestError` when no path exists.
    """
    found = discover(paths, max_bytes=int(settings.index.max_file_mb * 1024 * 1024))
    report.files_skipped = [{"path": source_name(s.path), "error": s.reason} for s in found.skipped]
    report.files_skipped += [{"path": source_name(p), "error": "does not exist"} for p in found.missing]
    if found.missing and len(found.missing) == len(paths):
        missing = ", ".join(f"{source_name(p)} does not exist" for p in found.missing)
        raise IngestError("nothing to ingest: " + missing)
    report.files_seen = len(found.files)
    return found.files


def open_or_create(index_dir: str | Path, settings: Settings, embedder: Embedder) -> IndexStore:
    """The index at ``index_dir``, checked against ``embedder``, or a new empty one built for it."""
    if IndexStore.exists(index_dir):
        store = IndexStore.open(index_dir, settings.index.use_gpu)
        store.manifest.check_compatible(embedder_model_name(embedder), embedder.dimension)
        return store
    return IndexStore.create(
        index_dir,
        embedding_model=embedder_model_name(embedder),
        embedding_model_id=embedder.model_id,
        dimension=embedder.dimension,
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        use_gpu=settings.index.use_gpu,
    )


def open_writer(store: IndexStore, settings: Settings, wait: float | None) -> IndexWriter:
    """The index's one writer, building the vector index the ``index`` settings describe.

    ``wait``: seconds to wait for another writer (unset: ``index.lock_wait_s``), then
    :class:`~rag_app.errors.IndexLockedError`.
    """
    return store.writer(settings.index, wait=settings.index.lock_wait_s if wait is None else wait)


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    """The chunker of ``settings``, its chunks no longer than ``embedder`` takes."""
    return Chunker(
        embedder.tokenizer,
        min(settings.chunking.chunk_tokens, embedder.max_tokens),
        settings.chunking.overlap_tokens,
    )


def record_failure(report: IngestReport, source: str, error: str) -> None:
    """Record a file that was not ingested; path and reason as printable, storable text."""
    report.files_failed.append({"path": source_name(source), "error": source_name(error)})


def unreadable(exc: OSError) -> str:
    """The reason recorded for a file that could not be read (stat or hash)."""
    return f"not readable: {exc.strerror or exc}"


def unchanged(writer: IndexWriter, source: str, digest: str, report: IngestReport) -> bool:
    """Whether ``source`` is indexed with this content hash already (then counted as unchanged)."""
    known = writer.document(source)
    if known is not None and known.content_hash == digest:
        report.files_unchanged += 1
        return True
    return False


def read_and_chunk(
    source: str,
    load: Callable[[], LoadedDocument],
    chunker: Chunker,
    prepare: Callable[[LoadedDocument], LoadedDocument] | None = None,
) -> tuple[LoadedDocument, list[Chunk]] | str:
    """The document of ``source``, loaded (and ``prepare``-d: PII redaction), and its chunks; or,
    when it failed to load or holds no text, the reason it is not ingested.

    A loader that crashes fails its file only: the reason names the exception.
    """
    try:
        document = load()
        if prepare is not None:
            document = prepare(document)
        chunks = chunker.chunk(document)
    except DocumentError as exc:
        return exc.reason
    except Exception as exc:  # a parser bug on one file must not stop the batch
        log.debug("loader crashed on %s", source, exc_info=True)
        return f"{type(exc).__name__}: {exc}"
    if not chunks:
        return "no text found"
    return document, chunks


def commit(documents: list[dict[str, Any]], writer: IndexWriter, report: IngestReport) -> None:
    """Write ``documents`` (:meth:`IndexWriter.put`'s dicts) in one transaction and count them."""
    if not documents:
        return
    added, removed = writer.put(documents)
    report.files_ingested += len(documents)
    report.bytes_ingested += sum(doc["size"] for doc in documents)
    report.chunks_added += added
    report.chunks_removed += removed


def prune_missing(
    paths: Sequence[str | Path], seen: list[Path], writer: IndexWriter, report: IngestReport
) -> None:
    """Remove indexed documents under ``paths`` whose files were not found this time."""
    roots = [source_name(Path(p).resolve()) for p in paths]
    seen_sources = {source_name(p) for p in seen}
    gone = []
    for source in writer.sources():
        under_root = any(source == r or source.startswith(r.rstrip("/") + "/") for r in roots)
        if under_root and source not in seen_sources:
            gone.append(source)
    if gone:
        report.chunks_removed += writer.delete(gone)
        report.files_removed = len(gone)
