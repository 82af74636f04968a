"""The adapter registry: SQLite, one row per adapter, an append-only log of promotions.

Each adapter records its base model (name and weights hash), method, the training data's hash,
hyperparameters, metrics and when it was made. Its files are copied under the registry's folder
(``<data_dir>/adapters/<name>``), so deleting a run folder does not break the generator.

Promotion is a log, not a flag: ``promote`` appends an event, ``rollback`` appends one that
returns to the adapter promoted before the current one (or to no adapter). After every change the
registry publishes what the runtime needs to ``<data_dir>/adapters/live.json``
(:mod:`rag_app.live_adapters`): the generator loads the promoted adapter by default
(``generator.adapter = "auto"``) without importing this package, and ``rag-app serve-llm`` serves
it to vLLM with ``--lora-modules``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import TrainingError
from rag_app.errors import ConfigError
from rag_app.live_adapters import LIVE_FILE, NOT_GENERATOR, LiveAdapter, check_generator, write_live
from rag_app.settings import Settings
from rag_app.store.migrations import apply_migrations

REGISTRY_DB = "registry.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Named, append-only migrations: a database records which ones it has applied.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            base_model TEXT NOT NULL,
            base_hash TEXT NOT NULL,
            method TEXT NOT NULL,
            data_hash TEXT NOT NULL,
            hyperparameters TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE TABLE promotions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
            adapter_id INTEGER REFERENCES adapters(id),
            at TEXT NOT NULL
        );
        """,
    ),
    (
        "002_loop_iterations",
        """
        CREATE TABLE loop_iterations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            parent TEXT,
            candidate TEXT NOT NULL,
            promoted INTEGER NOT NULL,
            reason TEXT NOT NULL,
            record TEXT NOT NULL
        );
        """,
    ),
]


@dataclass(frozen=True)
class AdapterRecord:
    """One registered adapter."""

    name: str
    path: Path
    base_model: str
    base_hash: str
    method: str
    data_hash: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str
    promoted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "base_model": self.base_model,
            "base_hash": self.base_hash,
            "method": self.method,
            "data_hash": self.data_hash,
            "hyperparameters": self.hyperparameters,
            "metrics": self.metrics,
            "created_at": self.created_at,
            "promoted": self.promoted,
        }


class Registry:
    """The adapter registry in ``folder`` (a SQLite file plus one sub-folder per adapter)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The registry under ``settings.data_dir / "adapters"``."""
        return cls(settings.data_dir / "adapters")

    # -- storage ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.folder / REGISTRY_DB, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        apply_migrations(conn, MIGRATIONS)
        if not (self.folder / LIVE_FILE).is_file():  # a registry from before live.json existed
            self._publish(conn)
        return conn

    def _publish(self, conn: sqlite3.Connection) -> None:
        """Rewrite ``live.json`` from the database: the promoted adapter and every registered one."""
        stack = _replay(conn.execute("SELECT action, adapter_id FROM promotions ORDER BY id").fetchall())
        rows = conn.execute("SELECT id, name, path, base_model, base_hash, method FROM adapters").fetchall()
        names = {row["id"]: row["name"] for row in rows}
        adapters = {
            row["name"]: {
                "path": row["path"],
                "base_model": row["base_model"],
                "base_hash": row["base_hash"],
                "method": row["method"],
            }
            for row in rows
        }
        write_live(self.folder, names.get(stack[-1]) if stack else None, adapters)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if not (self.folder / REGISTRY_DB).is_file():
            return []
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    # -- writing ------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        adapter: Path,
        *,
        base_model: str,
        base_hash: str,
        method: str,
        data_hash: str,
        hyperparameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> AdapterRecord:
        """Copy ``adapter`` into the registry under ``name`` and record it."""
        if not _NAME.match(name):
            raise ConfigError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise TrainingError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
        if self.get(name) is not None:
            raise ConfigError(f"an adapter named {name!r} is already registered: pick another name")
        target = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.folder))
        shutil.copytree(adapter, tmp, dirs_exist_ok=True)
        tmp.replace(target)
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO adapters (name, path, base_model, base_hash, method, data_hash, "
                    "hyperparameters, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        str(target.resolve()),
                        base_model,
                        base_hash,
                        method,
                        data_hash,
                        json.dumps(hyperparameters or {}),
                        json.dumps(metrics or {}),
                        _now(),
                    ),
                )
            self._publish(conn)
        finally:
            conn.close()
        return self.require(name)

    def promote(self, name: str) -> AdapterRecord:
        """Make ``name`` the adapter the generator loads (a reward model is refused: it scores
        answers, it does not write them)."""
        record = self.require(name)
        if record.method == NOT_GENERATOR:
            raise ConfigError(
                f"{name} is a reward model (method {record.method}): it scores answers and cannot "
                "generate them; promote an SFT, DPO or RLHF adapter"
            )
        self._log("promote", self._id(name))
        return record

    def rollback(self) -> AdapterRecord | None:
        """Return to the adapter promoted before the current one; ``None`` when that is no adapter."""
        stack = self._stack()
        if not stack:
            raise ConfigError("nothing to roll back: no adapter is promoted")
        previous = stack[-2] if len(stack) > 1 else None
        self._log("rollback", previous)
        return self._by_id(previous) if previous is not None else None

    def _log(self, action: str, adapter_id: int | None) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO promotions (action, adapter_id, at) VALUES (?, ?, ?)",
                    (action, adapter_id, _now()),
                )
            self._publish(conn)  # a crash between the commit and this line: the next open republishes
        finally:
            conn.close()

    def record_iteration(self, record: dict[str, Any]) -> int:
        """Store one retraining-loop iteration (parent, candidate, data hashes, runs, decision)."""
        conn = self._connect()
        try:
            with conn:
                cursor = conn.execute(
                    "INSERT INTO loop_iterations (at, parent, candidate, promoted, reason, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        _now(),
                        record.get("parent"),
                        record["candidate"],
                        int(bool(record.get("promoted"))),
                        str(record.get("reason", "")),
                        json.dumps(record, default=str),
                    ),
                )
                return int(cursor.lastrowid or 0)
        finally:
            conn.close()

    def iterations(self) -> list[dict[str, Any]]:
        """The loop's iterations, oldest first, each its full record with ``id`` and ``at``."""
        rows = self._query("SELECT id, at, record FROM loop_iterations ORDER BY id")
        return [{"id": r["id"], "at": r["at"], **json.loads(r["record"])} for r in rows]

    # -- reading ------------------------------------------------------------------------------
    def _stack(self) -> list[int]:
        """Promoted adapter ids, oldest first, after replaying the promotion log."""
        return _replay(self._query("SELECT action, adapter_id FROM promotions ORDER BY id"))

    def promoted(self) -> AdapterRecord | None:
        """The promoted adapter, if any."""
        stack = self._stack()
        return self._by_id(stack[-1]) if stack else None

    def records(self) -> list[AdapterRecord]:
        """Every adapter, newest first."""
        current: list[int | None] = [*self._stack()[-1:]] or [None]
        rows = self._query("SELECT * FROM adapters ORDER BY id DESC")
        return [_record(row, promoted=row["id"] == current[0]) for row in rows]

    def get(self, name: str) -> AdapterRecord | None:
        rows = self._query("SELECT * FROM adapters WHERE name = ?", (name,))
        if not rows:
            return None
        current: list[int | None] = [*self._stack()[-1:]] or [None]
        return _record(rows[0], promoted=rows[0]["id"] == current[0])

    def require(self, name: str) -> AdapterRecord:
        record = self.get(name)
        if record is None:
            known = ", ".join(r.name for r in self.records()[:10]) or "none registered yet"
            raise ConfigError(f"no adapter named {name!r} in the registry {self.folder} ({known})")
        return record

    def history(self) -> list[dict[str, Any]]:
        """The promotion log, oldest first."""
        rows = self._query(
            "SELECT p.action, p.at, a.name FROM promotions p "
            "LEFT JOIN adapters a ON a.id = p.adapter_id ORDER BY p.id"
        )
        return [{"action": r["action"], "adapter": r["name"], "at": r["at"]} for r in rows]

    def _id(self, name: str) -> int:
        return int(self._query("SELECT id FROM adapters WHERE name = ?", (name,))[0]["id"])

    def _by_id(self, adapter_id: int) -> AdapterRecord | None:
        rows = self._query("SELECT * FROM adapters WHERE id = ?", (adapter_id,))
        current: list[int | None] = [*self._stack()[-1:]] or [None]
        return _record(rows[0], promoted=rows[0]["id"] == current[0]) if rows else None


def _replay(rows: list[sqlite3.Row]) -> list[int]:
    """Promoted adapter ids, oldest first, from the promotion log's rows."""
    stack: list[int] = []
    for row in rows:
        if row["action"] == "promote":
            stack.append(int(row["adapter_id"]))
        elif stack:
            stack.pop()
    return stack


def _live(record: AdapterRecord) -> LiveAdapter:
    return LiveAdapter(record.name, record.path, record.base_model, record.base_hash, record.method)


def promoted_adapter(settings: Settings) -> Path | None:
    """The promoted adapter's folder, or ``None``: what ``generator.adapter = "promoted"`` loads.

    Raises :class:`ConfigError` when the adapter was trained on another base than ``generator.model``
    (an adapter on the wrong base loads without error and generates nonsense).
    """
    record = Registry.from_settings(settings).promoted()
    if record is None:
        return None
    return check_generator(_live(record), settings.generator.model, "the promoted adapter")


def registered_adapter(settings: Settings, name: str) -> Path | None:
    """The folder of the adapter registered as ``name`` (``None`` when there is none). A reward
    model, or an adapter trained on another base than ``generator.model``, is refused with
    :class:`ConfigError`."""
    record = Registry.from_settings(settings).get(name)
    if record is None:
        return None
    return check_generator(_live(record), settings.generator.model, "generator.adapter")


def merge(settings: Settings, adapter: str | Path, out: Path) -> Path:
    """Merge a LoRA adapter (a registry name or a folder) into its base model; write a full model folder.

    The base is the registry's ``base_model`` (else ``generator.model``); a base whose weights
    hash differs from the one the adapter was trained on is refused.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.common import base_model_folder
    from rag_app.models import weights_digest

    registry = Registry.from_settings(settings)
    record = registry.get(str(adapter)) if not Path(adapter).is_dir() else None
    folder = record.path if record is not None else Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is neither a registered adapter nor an adapter folder")
    config = PeftConfig.from_pretrained(str(folder))
    if str(config.peft_type).rsplit(".", 1)[-1] != "LORA":
        raise TrainingError(f"only LoRA adapters merge into the weights; {adapter} is {config.peft_type}")
    base = base_model_folder(record.base_model if record else settings.generator.model, settings)
    if record is not None and weights_digest(base) != record.base_hash:
        raise TrainingError(
            f"adapter {record.name} was trained on base weights {record.base_hash}, "
            f"but {base} has {weights_digest(base)}: merge it into the same base"
        )
    model = AutoModelForCausalLM.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    source = {"base": str(base), "adapter": str(folder), "adapter_name": record.name if record else None}
    (out / "rag-app-merge.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return out


def _record(row: sqlite3.Row, *, promoted: bool) -> AdapterRecord:
    return AdapterRecord(
        name=row["name"],
        path=Path(row["path"]),
        base_model=row["base_model"],
        base_hash=row["base_hash"],
        method=row["method"],
        data_hash=row["data_hash"],
        hyperparameters=json.loads(row["hyperparameters"]),
        metrics=json.loads(row["metrics"]),
        created_at=row["created_at"],
        promoted=promoted,
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
