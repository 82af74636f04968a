"""The labelling queue: questions the retraining loop could not label (no known right answer).

Each row keeps the question, the app's answer and the sources it was given; a person types the
right answer or marks the question unanswerable (the Streamlit Evaluation page, or
:meth:`LabellingQueue.label`). Labelled rows join the next iteration's training pool as
question/context/answer rows (:meth:`LabellingQueue.export_jsonl`, what ``finetune data`` reads).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from rag_app.errors import QueryError
from rag_app.store.migrations import apply_migrations

DB_NAME = "labelling.sqlite"
UNANSWERABLE = ""
"""The label of a question the documents do not answer."""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_queue",
        """
        CREATE TABLE queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            index_dir TEXT NOT NULL,
            question TEXT NOT NULL,
            app_answer TEXT NOT NULL,
            context TEXT NOT NULL,
            distractors TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT '',
            label TEXT,
            labelled_at TEXT,
            UNIQUE (index_dir, question)
        );
        """,
    ),
]


class LabellingQueue:
    """The queue in ``<data_dir>/labelling.sqlite``."""

    def __init__(self, data_dir: str | Path) -> None:
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(folder / DB_NAME, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        apply_migrations(self._conn, MIGRATIONS)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LabellingQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, candidates: list[Any], *, index_dir: str) -> int:
        """Queue unlabelled candidates (``eval.select.Candidate``); a question already queued for the
        same index is kept once. Returns how many were new."""
        before = self._conn.total_changes
        with self._conn:
            for c in candidates:
                self._conn.execute(
                    "INSERT OR IGNORE INTO queue (index_dir, question, app_answer, context, distractors, "
                    "source) VALUES (?, ?, ?, ?, ?, ?)",
                    (index_dir, c.question, c.app_answer, c.context, json.dumps(c.distractors), c.source),
                )
        return self._conn.total_changes - before

    def pending(self, limit: int = 50) -> list[dict[str, Any]]:
        """Rows waiting for a label, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM queue WHERE label IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [_row(r) for r in rows]

    def label(self, row_id: int, answer: str | None) -> None:
        """Set the right answer (``None`` or empty: the documents do not answer it)."""
        text = (answer or "").strip()
        with self._conn:
            changed = self._conn.execute(
                "UPDATE queue SET label = ?, labelled_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
                "WHERE id = ?",
                (text, row_id),
            ).rowcount
        if not changed:
            raise QueryError(f"no queued question with id {row_id}")

    def labelled(self, index_dir: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM queue WHERE label IS NOT NULL"
        params: tuple[str, ...] = ()
        if index_dir is not None:
            sql, params = sql + " AND index_dir = ?", (index_dir,)
        return [_row(r) for r in self._conn.execute(sql + " ORDER BY id", params).fetchall()]

    def counts(self) -> dict[str, int]:
        total = self._conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        done = self._conn.execute("SELECT COUNT(*) FROM queue WHERE label IS NOT NULL").fetchone()[0]
        return {"pending": int(total - done), "labelled": int(done)}


def _row(r: sqlite3.Row) -> dict[str, Any]:
    row = dict(r)
    row["distractors"] = json.loads(row["distractors"])
    return row


def training_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Labelled queue rows as question/context/answer rows (an empty label: unanswerable)."""
    return [
        {
            "id": f"label-{r['id']}",
            "question": r["question"],
            "context": r["context"],
            "answer": r["label"] or None,
            "distractors": r["distractors"],
            "source": r["source"],
        }
        for r in rows
        if r["context"]
    ]
