"""Chat conversations stored in SQLite, and how a follow-up question becomes a search query."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.generation.base import Message
from rag_app.store.migrations import apply_migrations

DB_NAME = "conversations.sqlite"

# Named, append-only migrations: a database records which ones it has applied. ``IF NOT EXISTS``
# keeps files written before the conversations had migrations: 001 then records what they hold.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            index_dir TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        );
        CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            answer TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        );
        CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, id);
        """,
    ),
]

_FOLLOW_UP = re.compile(
    r"^(and|but|so|also|what about|how about|why|then)\b|\b(it|its|they|them|their|this|that|these|those|"
    r"he|she|him|her|his|hers|there|the same|the other)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class StoredMessage:
    role: str
    content: str
    answer: dict[str, Any] | None


class ConversationStore:
    """Conversations and their messages (the answers as JSON, with citations and grounding)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(
            data_dir / DB_NAME, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        apply_migrations(self.conn, MIGRATIONS)

    def create(self, index_dir: str, title: str = "") -> str:
        conversation_id = uuid.uuid4().hex[:12]
        self.conn.execute(
            "INSERT INTO conversations (id, index_dir, title) VALUES (?, ?, ?)",
            (conversation_id, index_dir, title),
        )
        return conversation_id

    def exists(self, conversation_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return row is not None

    def add(
        self, conversation_id: str, role: str, content: str, answer: dict[str, Any] | None = None
    ) -> None:
        self.conn.execute(
            "INSERT INTO messages (conversation_id, role, content, answer) VALUES (?, ?, ?, ?)",
            (conversation_id, role, content, json.dumps(answer) if answer is not None else None),
        )

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        rows = self.conn.execute(
            "SELECT role, content, answer FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [StoredMessage(r[0], r[1], json.loads(r[2]) if r[2] else None) for r in rows]

    def list(self, index_dir: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT id, index_dir, title, created_at FROM conversations"
        rows = self.conn.execute(
            query + (" WHERE index_dir = ?" if index_dir else "") + " ORDER BY created_at",
            (index_dir,) if index_dir else (),
        )
        return [{"id": r[0], "index_dir": r[1], "title": r[2], "created_at": r[3]} for r in rows]

    def close(self) -> None:
        self.conn.close()


def history_messages(messages: list[StoredMessage], turns: int = 2) -> list[Message]:
    """The last ``turns`` question/answer pairs as chat messages (answers without their sources)."""
    recent = messages[-2 * turns :]
    return [{"role": "user" if m.role == "user" else "assistant", "content": m.content} for m in recent]


def retrieval_query(question: str, messages: list[StoredMessage]) -> str:
    """What to search for: a follow-up ("and its population?") is joined to the previous question.

    A small local model rewrites follow-ups unreliably, so this is a rule: a question that is
    short or refers back (pronouns, "what about") is searched together with the last user question.
    """
    previous = next((m.content for m in reversed(messages) if m.role == "user"), None)
    if previous is None:
        return question
    if len(question.split()) <= 4 or _FOLLOW_UP.search(question):
        return f"{previous} {question}"
    return question
