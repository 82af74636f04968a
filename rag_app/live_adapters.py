"""What the adapter registry publishes for the runtime: ``<data_dir>/adapters/live.json``.

The registry (``finetune.registry``, SQLite, an append-only promotion log) rewrites this small file
atomically after every change: which adapter is promoted, and every registered generator adapter
with its folder and base model. The runtime reads only this file, so serving an adapter never
imports the training package, and ``rag-app adapters promote`` takes effect at the next start of
the app (``generator.adapter = "auto"``, the default).

    {"promoted": "loop-sft-20261203-1200",
     "adapters": {"loop-sft-20261203-1200": {"path": "...", "base_model": "...", "base_hash": "...",
                                             "method": "sft"}}}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.errors import ConfigError

LIVE_FILE = "live.json"
REGISTRY_FOLDER = "adapters"
NOT_GENERATOR = "reward"
"""The method of registered adapters that score answers instead of writing them."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveAdapter:
    """One registered adapter as the runtime sees it."""

    name: str
    path: Path
    base_model: str
    base_hash: str
    method: str


def live_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / REGISTRY_FOLDER / LIVE_FILE


def write_live(folder: Path, promoted: str | None, adapters: dict[str, dict[str, Any]]) -> None:
    """Replace ``folder/live.json`` atomically (the registry calls this after each change)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"promoted": promoted, "adapters": adapters}, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".live.", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / LIVE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(data_dir: str | Path) -> dict[str, Any]:
    path = live_path(data_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"promoted": None, "adapters": {}}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is unreadable ({exc}): run `rag-app adapters list` to rewrite it from the registry"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("adapters", {}), dict):
        raise ConfigError(f"{path} is not an adapter list: run `rag-app adapters list` to rewrite it")
    return data


def registered(data_dir: str | Path, name: str) -> LiveAdapter | None:
    """The adapter registered as ``name``, or ``None``."""
    entry = _read(data_dir).get("adapters", {}).get(name)
    if not isinstance(entry, dict):
        return None
    return LiveAdapter(
        name, Path(entry["path"]), str(entry["base_model"]), str(entry.get("base_hash", "")),
        str(entry.get("method", "")),
    )  # fmt: skip


def promoted(data_dir: str | Path) -> LiveAdapter | None:
    """The promoted adapter, or ``None``."""
    name = _read(data_dir).get("promoted")
    return registered(data_dir, name) if isinstance(name, str) else None


def same_base(adapter: LiveAdapter, model: str) -> bool:
    """Whether ``adapter`` was trained on ``model`` (a packaged name, an alias, or a copy of its folder)."""
    from rag_app.models import ALIASES, weights_digest

    if ALIASES.get(model, model) == ALIASES.get(adapter.base_model, adapter.base_model):
        return True
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return weights_digest(folder) == adapter.base_hash
    return False


def check_generator(adapter: LiveAdapter, model: str, setting: str) -> Path:
    """``adapter``'s folder, after refusing a reward model or one trained on another base."""
    if adapter.method == NOT_GENERATOR:
        raise ConfigError(f"{setting}: {adapter.name} is a reward model, not a generator adapter")
    if not same_base(adapter, model):
        raise ConfigError(
            f"{setting}: {adapter.name} was trained on {adapter.base_model!r}, but generator.model is "
            f"{model!r}: set generator.model to its base, or promote another adapter"
        )
    return adapter.path


def auto_adapter(data_dir: str | Path, model: str) -> Path | None:
    """What ``generator.adapter = "auto"`` loads: the promoted adapter when it was trained on
    ``model`` (one trained on another base is skipped with a log line), else ``None``."""
    try:
        current = promoted(data_dir)
    except ConfigError as exc:
        log.warning("generator.adapter auto: %s; using the bare model", exc)
        return None
    if current is None:
        return None
    if current.method == NOT_GENERATOR or not same_base(current, model):
        log.info(
            "generator.adapter auto: the promoted adapter %s was trained on %s, not %s; using the bare model",
            current.name, current.base_model, model,
        )  # fmt: skip
        return None
    if not (current.path / "adapter_config.json").is_file():
        raise ConfigError(
            f"the promoted adapter {current.name} is missing its files at {current.path}: "
            "roll back (`rag-app adapters rollback`) or promote another adapter"
        )
    return current.path
