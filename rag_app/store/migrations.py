"""Named schema migrations for the project's SQLite files (index docstore, feedback, conversations,
adapter registry, eval runs and labels).

Each migration runs once, in its own transaction together with its record in ``_migrations``, so a
crash mid-migration leaves the file as it was before it. A migration's SQL is a script that SQLite
itself parses (``executescript``), so semicolons inside string literals or trigger bodies are safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from rag_app.errors import RagAppError


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[tuple[str, str]]) -> None:
    """Apply the ``(name, sql)`` migrations not yet recorded; ``sql`` may hold several statements.

    Raises :class:`RagAppError` when ``conn`` has a transaction open: ``executescript`` would
    commit it first, so the migration could not be rolled back with the caller's work.
    """
    if conn.in_transaction:
        raise RagAppError("cannot apply migrations inside an open transaction; commit or roll back first")
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for name, sql in migrations:
        if name in done:
            continue
        try:
            # the script opens the transaction and leaves it open; the record joins it, then COMMIT
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;")
            conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
