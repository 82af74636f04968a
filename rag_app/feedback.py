"""Answer feedback (thumbs up/down, an optional correction) stored in SQLite for the retraining loop.

The Streamlit app, the REST API and the eval package share this store: the apps record what a
user thought of an answer; eval reads the thumbs-down answers and their corrections back as
training data (``rows(rating=-1)``, ``export_jsonl``).

    store = FeedbackStore(settings.data_dir)
    row_id = store.add(answer, rating=-1, index_dir="my-index", correction="It opened in 1889.")
    store.set_correction(row_id, "It opened on 31 March 1889.")
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.answer import Answer
from rag_app.errors import QueryError
from rag_app.store.migrations import apply_migrations

DB_NAME = "feedback.sqlite"

# Named, append-only migrations: a database records which ones it has applied.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_feedback",
        """
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            index_dir TEXT NOT NULL,
            conversation_id TEXT,
            question TEXT NOT NULL,
            answer_text TEXT NOT NULL,
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
            correction TEXT,
            abstained INTEGER NOT NULL,
            grounding REAL,
            model TEXT NOT NULL DEFAULT '',
            adapter TEXT,
            answer TEXT NOT NULL
        );
        CREATE INDEX feedback_rating ON feedback(rating, id);
        """,
    ),
]


@dataclass(frozen=True)
class FeedbackRow:
    """One judged answer."""

    id: int
    created_at: str
    index_dir: str
    conversation_id: str | None
    question: str
    answer_text: str
    rating: int
    """``1``: thumbs up, ``-1``: thumbs down."""
    correction: str | None
    """What the answer should have said, when the user wrote it."""
    abstained: bool
    grounding: float | None
    model: str
    adapter: str | None
    answer: dict[str, Any]
    """The whole :class:`Answer` as JSON (citations and grounding included)."""

    def to_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


class FeedbackStore:
    """Feedback rows in ``DATA_DIR/feedback.sqlite`` (WAL mode: the apps and eval may share it)."""

    def __init__(self, data_dir: str | Path) -> None:
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / DB_NAME
        self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(self.conn, MIGRATIONS)

    def add(
        self,
        answer: Answer,
        *,
        rating: int,
        index_dir: str | Path,
        conversation_id: str | None = None,
        correction: str | None = None,
    ) -> int:
        """Record a judgement of ``answer``; returns the row id (to add a correction later)."""
        _check_rating(rating)
        grounding = answer.grounding.score if answer.grounding is not None else None
        cursor = self.conn.execute(
            "INSERT INTO feedback (index_dir, conversation_id, question, answer_text, rating, correction, "
            "abstained, grounding, model, adapter, answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(index_dir),
                conversation_id,
                answer.question,
                answer.text,
                rating,
                _clean(correction),
                int(answer.abstained),
                grounding,
                answer.model,
                answer.adapter,
                json.dumps(answer.to_dict(), ensure_ascii=False),
            ),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def set_rating(self, row_id: int, rating: int) -> None:
        """Change a judgement (the user clicked the other thumb)."""
        _check_rating(rating)
        self._update(row_id, "rating", rating)

    def set_correction(self, row_id: int, correction: str | None) -> None:
        """Attach (or, with an empty text, remove) the user's correction."""
        self._update(row_id, "correction", _clean(correction))

    def _update(self, row_id: int, column: str, value: Any) -> None:
        cursor = self.conn.execute(
            f"UPDATE feedback SET {column} = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
            "WHERE id = ?",
            (value, row_id),
        )
        if cursor.rowcount == 0:
            raise QueryError(f"no feedback with id {row_id}")

    def get(self, row_id: int) -> FeedbackRow:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM feedback WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise QueryError(f"no feedback with id {row_id}")
        return _row(row)

    def rows(self, *, rating: int | None = None, index_dir: str | Path | None = None) -> list[FeedbackRow]:
        """Rows in the order they were given, optionally only one rating or one index."""
        where: list[str] = []
        args: list[Any] = []
        if rating is not None:
            _check_rating(rating)
            where.append("rating = ?")
            args.append(rating)
        if index_dir is not None:
            where.append("index_dir = ?")
            args.append(str(index_dir))
        sql = f"SELECT {_COLUMNS} FROM feedback" + (" WHERE " + " AND ".join(where) if where else "")
        return [_row(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def counts(self) -> dict[str, int]:
        """``{"up": n, "down": n, "corrections": n}``."""
        up, down, corrections = self.conn.execute(
            "SELECT COALESCE(SUM(rating = 1), 0), COALESCE(SUM(rating = -1), 0), "
            "COALESCE(SUM(correction IS NOT NULL), 0) FROM feedback"
        ).fetchone()
        return {"up": int(up), "down": int(down), "corrections": int(corrections)}

    def export_jsonl(self, path: str | Path, *, rating: int | None = None) -> int:
        """Write rows as JSON lines (for the retraining loop); returns how many were written."""
        rows = self.rows(rating=rating)
        target = Path(path)
        with target.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
        return len(rows)

    def close(self) -> None:
        self.conn.close()


_COLUMNS = (
    "id, created_at, index_dir, conversation_id, question, answer_text, rating, correction, "
    "abstained, grounding, model, adapter, answer"
)


def _row(r: tuple[Any, ...]) -> FeedbackRow:
    return FeedbackRow(
        id=r[0],
        created_at=r[1],
        index_dir=r[2],
        conversation_id=r[3],
        question=r[4],
        answer_text=r[5],
        rating=r[6],
        correction=r[7],
        abstained=bool(r[8]),
        grounding=r[9],
        model=r[10],
        adapter=r[11],
        answer=json.loads(r[12]),
    )


def _check_rating(rating: int) -> None:
    if rating not in (-1, 1):
        raise QueryError(f"rating must be 1 (thumbs up) or -1 (thumbs down), got {rating!r}")


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None
