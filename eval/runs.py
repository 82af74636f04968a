"""Evaluation runs stored in SQLite (``DATA_DIR/eval-runs.sqlite``, WAL mode).

A run is written as it goes: its row first (status ``running``), then one row per answer as
each is scored, then the summary. A run that stops halfway (Ctrl-C, a crash) keeps every answer
it finished and reads back as ``interrupted``; nothing is rewritten in place.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.types import EvalSample, MetricSummary, RunRecord, SampleResult
from rag_app.errors import RagAppError
from rag_app.store.migrations import apply_migrations

DB_NAME = "eval-runs.sqlite"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_runs",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            dataset TEXT NOT NULL,
            status TEXT NOT NULL,
            manifest TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}',
            hallucination TEXT NOT NULL DEFAULT '{}',
            probes TEXT NOT NULL DEFAULT '{}',
            wall_seconds REAL NOT NULL DEFAULT 0
        );
        CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            sample_id TEXT NOT NULL,
            replicate INTEGER NOT NULL,
            grounding REAL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, sample_id, replicate)
        );
        CREATE TABLE samples (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            sample_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, sample_id)
        );
        """,
    ),
]


class RunNotFoundError(RagAppError):
    """No stored run has this id (or prefix)."""


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: sorts by time, unique across machines."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    """The stored runs; one per process or thread (SQLite connections are not shared)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        apply_migrations(self.conn, MIGRATIONS)

    @classmethod
    def for_settings(cls, settings: Any) -> RunStore:
        """The store named by ``eval.runs_db`` (default ``DATA_DIR/eval-runs.sqlite``)."""
        return cls(settings.eval.runs_db or Path(settings.data_dir) / DB_NAME)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------
    def start(
        self, run_id: str, dataset: str, manifest: dict[str, Any], samples: Sequence[EvalSample] = ()
    ) -> None:
        """Record a new run (status ``running``) and the samples it will ask (with their references)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO runs (id, created_at, dataset, status, manifest) VALUES (?, ?, ?, 'running', ?)",
                (run_id, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), dataset, _dump(manifest)),
            )
            self.conn.executemany(
                "INSERT INTO samples (run_id, sample_id, payload) VALUES (?, ?, ?)",
                [(run_id, s.id, _dump(s.to_dict())) for s in samples],
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def samples(self, run_id: str) -> dict[str, EvalSample]:
        """The questions of a run with their reference answers, contexts and ids."""
        full = self.resolve(run_id)
        return {
            sid: EvalSample.from_dict(json.loads(payload))
            for sid, payload in self.conn.execute(
                "SELECT sample_id, payload FROM samples WHERE run_id = ? ORDER BY rowid", (full,)
            )
        }

    def add_result(self, run_id: str, result: SampleResult) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO results (run_id, sample_id, replicate, grounding, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            (run_id, result.sample_id, result.replicate, result.grounding, _dump(result.to_dict())),
        )

    def finish(self, record: RunRecord) -> None:
        """Store the scored results, summary, reports and wall time; the run becomes ``record.status``."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for result in record.results:
                self.add_result(record.id, result)
            self.conn.execute(
                "UPDATE runs SET status = ?, manifest = ?, summary = ?, hallucination = ?, probes = ?, "
                "wall_seconds = ? WHERE id = ?",
                (
                    record.status,
                    _dump(record.manifest),
                    _dump({k: v.to_dict() for k, v in record.summary.items()}),
                    _dump(record.hallucination),
                    _dump(record.probes),
                    record.wall_seconds,
                    record.id,
                ),
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def mark(self, run_id: str, status: str) -> None:
        self.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def delete(self, run_id: str) -> None:
        self.conn.execute("DELETE FROM runs WHERE id = ?", (self.resolve(run_id),))

    # -- reading --------------------------------------------------------------------------------
    def resolve(self, run_id: str) -> str:
        """The full id of ``run_id``, which may be a unique prefix or ``latest``."""
        if run_id == "latest":
            row = self.conn.execute(
                "SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise RunNotFoundError(f"no evaluation runs in {self.path} yet (rag-app eval run ...)")
            return str(row[0])
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE id = ? OR id LIKE ? ORDER BY id LIMIT 2", (run_id, f"{run_id}%")
        ).fetchall()
        if not rows:
            raise RunNotFoundError(f"no evaluation run {run_id!r} in {self.path} (rag-app eval list)")
        if len(rows) > 1 and rows[0][0] != run_id:
            raise RunNotFoundError(f"{run_id!r} matches several runs; give more of the id")
        return str(rows[0][0])

    def get(self, run_id: str, *, results: bool = True) -> RunRecord:
        """A stored run; ``results=False`` leaves out its per-answer rows (summaries only)."""
        full = self.resolve(run_id)
        row = self.conn.execute(
            "SELECT id, created_at, dataset, status, manifest, summary, hallucination, probes, wall_seconds "
            "FROM runs WHERE id = ?",
            (full,),
        ).fetchone()
        rows = (
            [
                SampleResult.from_dict(json.loads(payload))
                for (payload,) in self.conn.execute(
                    "SELECT payload FROM results WHERE run_id = ? ORDER BY rowid", (full,)
                )
            ]
            if results
            else []
        )
        summary = {k: MetricSummary(**v) for k, v in json.loads(row[5]).items()}
        return RunRecord(
            id=row[0],
            created_at=row[1],
            dataset=row[2],
            status="interrupted" if row[3] == "running" else row[3],
            manifest=json.loads(row[4]),
            summary=summary,
            results=rows,
            hallucination=json.loads(row[6]),
            probes=json.loads(row[7]),
            wall_seconds=float(row[8]),
        )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs: id, date, dataset, status, answers, wall time and headline metrics."""
        out = []
        for run_id, created, dataset, status, summary, wall in self.conn.execute(
            "SELECT id, created_at, dataset, status, summary, wall_seconds FROM runs "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (limit,),
        ):
            answers = self.conn.execute(
                "SELECT COUNT(*) FROM results WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            metrics = {k: v.get("mean") for k, v in json.loads(summary).items()}
            out.append(
                {
                    "id": run_id,
                    "created_at": created,
                    "dataset": dataset,
                    "status": "interrupted" if status == "running" else status,
                    "answers": answers,
                    "wall_seconds": wall,
                    "metrics": metrics,
                }
            )
        return out

    def history(self, dataset: str, limit: int = 20) -> list[RunRecord]:
        """Earlier complete runs on the same dataset, oldest first (without their per-answer rows)."""
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE dataset = ? AND status = 'complete' "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (dataset, limit),
            )
        ]
        return [self.get(run_id, results=False) for run_id in reversed(ids)]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
