"""A private copy of an index folder, so probes can plant documents without touching the user's."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_app.documents import LoadedDocument
    from rag_app.rag import RAG


log = logging.getLogger(__name__)


# -- the index copy ------------------------------------------------------------------------
def copy_index(source: str | Path, target: str | Path, *, timeout_s: float = 60.0) -> Path:
    """Copy an index folder without changing it: under its writer lock, the docstore through
    SQLite's backup API (WAL included), then the manifest and the files it names."""
    from filelock import FileLock, Timeout

    from rag_app.errors import IndexLockedError, IndexNotFoundError
    from rag_app.store.index import LOCK_NAME
    from rag_app.store.manifest import MANIFEST_NAME

    src, dst = Path(source), Path(target)
    if not (src / MANIFEST_NAME).is_file():
        raise IndexNotFoundError(f"no index at {src} to copy")
    dst.mkdir(parents=True, exist_ok=True)
    lock_file = src / LOCK_NAME
    if not lock_file.exists():  # never create a file in the user's folder
        _copy_files(src, dst)
        return dst
    try:
        with FileLock(str(lock_file), timeout=timeout_s):
            _copy_files(src, dst)
    except Timeout:
        raise IndexLockedError(f"{src} is being written to; probe it when the ingest has finished") from None
    except PermissionError:  # read-only media: nobody can write there either
        log.warning("cannot take the writer lock of %s; copying without it", src)
        _copy_files(src, dst)
    return dst


def _copy_files(src: Path, dst: Path) -> None:
    from rag_app.store.docstore import DOCSTORE_NAME
    from rag_app.store.manifest import MANIFEST_NAME, Manifest

    manifest = Manifest.load(src)
    _backup_sqlite(src / DOCSTORE_NAME, dst / DOCSTORE_NAME)
    if manifest.vectors_file and (src / manifest.vectors_file).is_file():
        shutil.copy2(src / manifest.vectors_file, dst / manifest.vectors_file)
    if manifest.bm25_dir and (src / manifest.bm25_dir).is_dir():
        shutil.copytree(src / manifest.bm25_dir, dst / manifest.bm25_dir, dirs_exist_ok=True)
    shutil.copy2(src / MANIFEST_NAME, dst / MANIFEST_NAME)


def _backup_sqlite(src: Path, dst: Path) -> None:
    """Copy a SQLite file with its WAL. A read-write connection (that only reads): a read-only one
    would leave ``-wal``/``-shm`` files behind; this one removes them on close when it is the last."""
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=rw", uri=True)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


@contextmanager
def temporary_copy(rag: RAG, work_dir: str | Path | None) -> Iterator[RAG]:
    """A temporary copy of the app's index, opened (``RAG.open``) with the app's settings, embedder
    and generator: plant documents in it and ask it as the app would be asked."""
    from rag_app.rag import RAG

    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rag-probe-", dir=work_dir) as tmp:
        folder = copy_index(rag.index_dir, Path(tmp) / "index")
        copy = RAG.open(folder, rag.settings, embedder=rag.embedder, generator=rag.generator)
        try:
            yield copy
        finally:
            copy.close()


def planted_document(source: str, text: str) -> LoadedDocument:
    from rag_app.documents import LoadedDocument, Section

    return LoadedDocument(source=source, format="txt", sections=[Section(text)], metadata={"probe": True})
