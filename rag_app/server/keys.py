"""API keys: several keys, each with a scope, stored hashed in a JSON file.

A key reads ``rak_<id>_<secret>``. The file keeps the id, the SHA-256 of the secret, the scope and
an optional per-key rate limit; the secret itself is shown once, when the key is created. Secrets
are 256 random bits, so a fast hash is enough (as for GitHub tokens): nobody can brute-force them,
and checking a key costs microseconds on every request.

    rag-app serve keys add --scope admin --name ci
    rag-app serve keys list
    rag-app serve keys revoke ID
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rag_app.errors import ConfigError

Scope = Literal["read", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "admin")
PREFIX = "rak"


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (no secret)."""

    id: str
    name: str
    scope: Scope
    sha256: str
    created_at: str
    rate_limit_per_minute: int | None = None
    """Overrides ``server.rate_limit_per_minute`` for this key (0: unlimited)."""

    def allows(self, scope: Scope) -> bool:
        """``admin`` may do everything; ``read`` only reads."""
        return self.scope == "admin" or scope == "read"

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "sha256"}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """The keys file, re-read when it changes on disk (keys added while the server runs work at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------
    def _load(self) -> dict[str, ApiKey]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    rows = json.loads(self.path.read_text(encoding="utf-8")).get("keys", [])
                    self._keys = {row["id"]: ApiKey(**row) for row in rows}
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    raise ConfigError(f"API keys file {self.path} is unreadable: {exc}") from None
                self._stamp = stamp
            return self._keys

    def list_keys(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_at)

    def verify(self, presented: str) -> ApiKey | None:
        """The stored key matching ``presented``, or None (unknown, revoked or malformed)."""
        parts = presented.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        key = self._load().get(parts[1])
        if key is None or not hmac.compare_digest(key.sha256, _digest(parts[2])):
            return None
        return key

    # -- writing --------------------------------------------------------------------------
    def add(
        self, scope: Scope, name: str = "", rate_limit_per_minute: int | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and the full secret token (shown once, never stored)."""
        if scope not in SCOPES:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            name=name,
            scope=scope,
            sha256=_digest(secret),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            rate_limit_per_minute=rate_limit_per_minute,
        )
        self._write([*self.list_keys(), key])
        return key, f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        keys = self.list_keys()
        kept = [k for k in keys if k.id != key_id]
        if len(kept) == len(keys):
            return False
        self._write(kept)
        return True

    def _write(self, keys: list[ApiKey]) -> None:
        """Atomically, readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".api-keys-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
