"""The migration runner: SQLite parses each script, and a migration and its record commit together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rag_app.conversations import DB_NAME, MIGRATIONS, ConversationStore
from rag_app.errors import RagAppError
from rag_app.store.migrations import apply_migrations

TRIGGER = (
    "002_trigger",
    """
    CREATE TABLE log (note TEXT);
    -- a trigger body holds semicolons; so does a string literal: 'a; b'
    CREATE TRIGGER notes_logged AFTER INSERT ON notes BEGIN
        INSERT INTO log (note) VALUES (new.body || '; logged');
    END;
    """,
)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def test_scripts_with_semicolons_in_triggers_and_literals(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "m.sqlite")
    apply_migrations(conn, [("001_notes", "CREATE TABLE notes (body TEXT DEFAULT 'x; y')"), TRIGGER])
    conn.execute("INSERT INTO notes (body) VALUES ('hi')")
    assert conn.execute("SELECT note FROM log").fetchall() == [("hi; logged",)]
    assert conn.execute("INSERT INTO notes DEFAULT VALUES RETURNING body").fetchone() == ("x; y",)
    apply_migrations(conn, [("001_notes", "CREATE TABLE notes (body TEXT)"), TRIGGER])  # applied once
    assert _names(conn) == ["001_notes", "002_trigger"]


@pytest.mark.parametrize("legacy", [False, True], ids=["autocommit", "legacy-isolation"])
def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "m.sqlite"
    conn = sqlite3.connect(path) if legacy else _connect(path)
    apply_migrations(conn, [("001_notes", "CREATE TABLE notes (body TEXT)")])
    broken = ("002_broken", "CREATE TABLE half (x INTEGER); INSERT INTO notes VALUES ('a'); SELECT nope();")
    with pytest.raises(sqlite3.OperationalError, match="nope"):
        apply_migrations(conn, [("001_notes", ""), broken])
    assert not conn.in_transaction
    assert _names(conn) == ["001_notes"]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables
    assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)


def test_refuses_to_run_inside_an_open_transaction(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "m.sqlite")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RagAppError, match="open transaction"):
        apply_migrations(conn, [("001", "CREATE TABLE u (y INTEGER)")])
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_conversations_use_the_migrations(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    assert _names(store.conn) == [name for name, _ in MIGRATIONS]
    store.close()


def test_conversations_written_before_migrations_still_open(tmp_path: Path) -> None:
    """A file whose tables were created without ``_migrations`` opens and keeps its rows."""
    conn = _connect(tmp_path / DB_NAME)
    conn.executescript(MIGRATIONS[0][1])
    conn.execute("INSERT INTO conversations (id, index_dir) VALUES ('c1', '/idx')")
    conn.close()
    store = ConversationStore(tmp_path)
    assert store.exists("c1")
    assert _names(store.conn) == ["001_initial"]
    store.close()
