"""The SQLite docstore: documents, chunks and their vectors. The source of truth of an index."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.documents import Chunk, Hit
from rag_app.store.migrations import apply_migrations

DOCSTORE_NAME = "docstore.sqlite"

# Named, append-only migrations: a database records which ones it has applied.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL UNIQUE,
            content_hash TEXT NOT NULL,
            format TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            n_chunks INTEGER NOT NULL,
            ingested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            page INTEGER,
            heading_path TEXT NOT NULL DEFAULT '[]',
            text_hash TEXT NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX chunks_doc ON chunks(doc_id);
        CREATE INDEX chunks_text_hash ON chunks(text_hash);
        """,
    ),
]


@dataclass(frozen=True)
class DocumentRow:
    """A document as recorded in the docstore."""

    id: int
    source: str
    content_hash: str
    format: str
    size: int
    mtime: float
    n_chunks: int
    ingested_at: str
    metadata: dict[str, Any]


class Docstore:
    """Typed access to ``docstore.sqlite``. One instance per thread; writes go through transactions."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        self.conn = sqlite3.connect(
            uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            apply_migrations(self.conn, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` commits on success, rolls back on error."""
        return _Transaction(self.conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """``with store.snapshot():`` the reads inside see one committed state (a read transaction)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def generation(self) -> int:
        """Increases with every committed change; derived files record the one they were built from."""
        return int(self.get_meta("generation", "0") or 0)

    def bump_generation(self) -> int:
        value = self.generation + 1
        self.set_meta("generation", str(value))
        return value

    # -- documents ----------------------------------------------------------------------
    def document(self, source: str) -> DocumentRow | None:
        row = self.conn.execute("SELECT * FROM documents WHERE source = ?", (source,)).fetchone()
        return _document_row(row) if row else None

    def document_by_id(self, doc_id: int) -> DocumentRow | None:
        row = self.conn.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return _document_row(row) if row else None

    def documents(self) -> list[DocumentRow]:
        return [_document_row(r) for r in self.conn.execute("SELECT * FROM documents ORDER BY source")]

    def sources(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT source FROM documents")}

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        docs = self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)

    def replace_document(
        self,
        *,
        source: str,
        content_hash: str,
        format: str,
        size: int,
        mtime: float,
        metadata: dict[str, Any],
        chunks: Sequence[Chunk],
        text_hashes: Sequence[str],
        vectors: np.ndarray,
    ) -> tuple[list[int], list[int]]:
        """Insert a document, or replace the one with the same ``source``. Call inside a transaction.

        Returns (ids of the chunks added, ids of the chunks removed).
        """
        removed = self.delete_document(source)
        cursor = self.conn.execute(
            "INSERT INTO documents (source, content_hash, format, size, mtime, metadata, n_chunks) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, content_hash, format, size, mtime, json.dumps(metadata, default=str), len(chunks)),
        )
        doc_id = int(cursor.lastrowid or 0)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        added: list[int] = []
        for chunk, text_hash, vector in zip(chunks, text_hashes, vectors, strict=True):
            cur = self.conn.execute(
                "INSERT INTO chunks "
                '(doc_id, ordinal, text, start, "end", page, heading_path, text_hash, vector) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    chunk.ordinal,
                    chunk.text,
                    chunk.start,
                    chunk.end,
                    chunk.page,
                    json.dumps(list(chunk.heading_path)),
                    text_hash,
                    vector.tobytes(),
                ),
            )
            added.append(int(cur.lastrowid or 0))
        return added, removed

    def delete_document(self, source: str) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids. Call inside a transaction."""
        row = self.conn.execute("SELECT id FROM documents WHERE source = ?", (source,)).fetchone()
        if row is None:
            return []
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (row[0],))]
        self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (row[0],))
        self.conn.execute("DELETE FROM documents WHERE id = ?", (row[0],))
        return ids

    # -- chunks and vectors -------------------------------------------------------------
    def cached_vectors(self, text_hashes: Iterable[str]) -> dict[str, bytes]:
        """Vectors already computed for these chunk texts (the embedding cache)."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(text_hashes))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                f"SELECT text_hash, vector FROM chunks WHERE text_hash IN ({marks}) GROUP BY text_hash", part
            ):
                found[row[0]] = row[1]
        return found

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Hits for (chunk id, score) pairs, in the given order; ids no longer present are dropped."""
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        rows: dict[int, sqlite3.Row] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                'SELECT c.id, c.text, c.start, c."end", c.page, c.heading_path, c.doc_id, d.source '
                f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                part,
            ):
                rows[row["id"]] = row
        hits = []
        for chunk_id, score in scored:
            row = rows.get(chunk_id)
            if row is None:
                continue
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    text=row["text"],
                    source=row["source"],
                    page=row["page"],
                    start=row["start"],
                    end=row["end"],
                    score=float(score),
                    heading_path=tuple(json.loads(row["heading_path"])),
                    doc_id=row["doc_id"],
                )
            )
        return hits

    def vectors_for(self, ids: Sequence[int], dimension: int) -> np.ndarray:
        """Vectors of these chunks in the given order (zeros for ids that are gone)."""
        out = np.zeros((len(ids), dimension), dtype=np.float32)
        where = {chunk_id: i for i, chunk_id in enumerate(ids)}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", part):
                out[where[row[0]]] = np.frombuffer(row[1], dtype=np.float32)
        return out

    def iter_vectors(self, dimension: int, batch: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, in batches, for rebuilding the vector index."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dimension)
            yield ids, vectors
            last = int(ids[-1])

    def iter_texts(self) -> Iterator[tuple[int, str]]:
        """All (chunk id, text) in id order, for rebuilding the BM25 index."""
        yield from self.conn.execute("SELECT id, text FROM chunks ORDER BY id")

    def chunk_ids_matching(self, *, source_glob: str | None, formats: Sequence[str] | None) -> np.ndarray:
        """Ids of chunks whose document matches a source glob and/or one of the formats."""
        clauses, params = [], []
        if source_glob:
            clauses.append("d.source GLOB ?")
            params.append(source_glob if any(c in source_glob for c in "*?[") else f"*{source_glob}*")
        if formats:
            clauses.append(f"d.format IN ({','.join('?' * len(formats))})")
            params.extend(formats)
        where = " AND ".join(clauses) or "1"
        rows = self.conn.execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}", params
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _document_row(row: sqlite3.Row) -> DocumentRow:
    return DocumentRow(
        id=row["id"],
        source=row["source"],
        content_hash=row["content_hash"],
        format=row["format"],
        size=row["size"],
        mtime=row["mtime"],
        n_chunks=row["n_chunks"],
        ingested_at=row["ingested_at"],
        metadata=json.loads(row["metadata"] or "{}"),
    )
