"""Named schema migrations for the project's SQLite files (index docstore, feedback, adapter registry).

Each migration runs once, in its own transaction, and is recorded by name in ``_migrations``;
a crash mid-migration leaves the file as it was before it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[tuple[str, str]]) -> None:
    """Apply the ``(name, sql)`` migrations not yet recorded; ``sql`` may hold several statements."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for name, sql in migrations:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
