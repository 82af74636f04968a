"""Where Milvus runs and how to reach it: URIs, the token, clients, milvus-lite servers.

- ``index.milvus_uri`` unset: a milvus-lite database folder ``vectors.milvus.db`` (:data:`LITE_NAME`)
  inside the index folder (in-process, no server; one process at a time may open it); a relative
  ``.db`` path is taken inside the index folder too;
- ``index.milvus_uri = "http://host:19530"``: a Milvus server or cluster; the token (``user:password``
  or an API key) comes from ``$RAG_APP_MILVUS_TOKEN`` and is never written to the manifest (a URI
  with credentials in it is refused by :func:`recorded_uri`).

:func:`open_client` connects; each milvus-lite database gets one in-process server, shared by the
clients of this process and released when the last is closed (:func:`close_client`). Failed
requests become :class:`MilvusUnavailableError` with a message naming the URI and what to check.
The collection and its vectors are :mod:`rag_app.store.milvus`'s.

pymilvus is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rag_app.errors import ConfigError, StoreUnavailableError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

TOKEN_ENV = "RAG_APP_MILVUS_TOKEN"
"""Environment variable holding the Milvus token (``user:password`` or an API key)."""
LITE_NAME = "vectors.milvus.db"
"""The milvus-lite database folder inside an index folder (the default ``index.milvus_uri``)."""
DEFAULT_TIMEOUT_S = 10.0

_SCHEMES = ("http://", "https://", "tcp://", "unix:")


class MilvusUnavailableError(StoreUnavailableError):
    """Milvus could not be reached or refused a request; the message names the URI and what to check."""


class MilvusCollectionMissingError(MilvusUnavailableError):
    """The collection an index folder names is gone (dropped); a writer fills a new one from the docstore."""


# -- where -------------------------------------------------------------------------------------
def is_lite(uri: str) -> bool:
    """Whether ``uri`` names a milvus-lite database (a local path) rather than a server."""
    return not uri.startswith(_SCHEMES)


def default_collection(folder: Path) -> str:
    """A collection name for the index folder ``folder``: its name plus a hash of its full path."""
    resolved = str(Path(folder).resolve())
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(resolved).name)[:40] or "index"
    return f"rag_{stem}_{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"


def recorded_uri(uri: str) -> str:
    """``uri`` as the manifest records it; a URI carrying credentials is refused (they go in the token)."""
    if not uri:
        return LITE_NAME
    if is_lite(uri) and not uri.endswith(".db"):
        raise ConfigError(
            f"index.milvus_uri {uri!r} is neither a server (http://host:19530) nor a milvus-lite "
            "database path ending in .db"
        )
    if not is_lite(uri):
        parts = urlsplit(uri)
        if parts.username or parts.password or "token=" in parts.query:
            raise ConfigError(
                f"index.milvus_uri must not carry credentials (they would be written to the manifest); "
                f"set ${TOKEN_ENV} instead and use {parts.scheme}://{parts.hostname}:{parts.port or 19530}"
            )
    return uri


def connect_uri(uri: str, folder: Path | None) -> str:
    """What pymilvus connects to: a server URI as is, a relative lite path under ``folder``."""
    if is_lite(uri) and folder is not None and not Path(uri).is_absolute():
        return str(Path(folder) / uri)
    return uri


# -- milvus-lite servers: one per database folder and process, released when unused -------------
_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}


def _lite_acquire(path: str) -> None:
    with _lite_lock:
        _lite_users[path] = _lite_users.get(path, 0) + 1


def _lite_release(path: str) -> None:
    with _lite_lock:
        left = _lite_users.get(path, 0) - 1
        if left > 0:
            _lite_users[path] = left
            return
        _lite_users.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(path)  # frees the database's lock for other processes


def lite_servers() -> list[str]:
    """Database folders this process holds a milvus-lite server for (to check clean-up)."""
    with _lite_lock:
        return sorted(_lite_users)


# -- clients ---------------------------------------------------------------------------------
def close_client(client: MilvusClient, lite_path: str | None) -> None:
    """Close ``client`` (errors ignored) and give back its milvus-lite server, if it holds one."""
    with contextlib.suppress(Exception):
        client.close()
    if lite_path is not None:
        _lite_release(lite_path)


def failures() -> tuple[type[BaseException], ...]:
    """What a failed Milvus request raises: pymilvus's errors, and grpc's own on a missed deadline."""
    import grpc
    from pymilvus.exceptions import MilvusException

    return (MilvusException, grpc.RpcError)


def reason(exc: BaseException) -> str:
    """The message of a failed Milvus request (pymilvus's ``message``, grpc's ``details()``)."""
    details = getattr(exc, "details", None)
    return str(getattr(exc, "message", None) or (details() if callable(details) else "") or exc)


def open_client(uri: str, timeout: float) -> tuple[MilvusClient, str | None]:
    """A connected client and, for milvus-lite, the database path it holds; clear errors otherwise."""
    from pymilvus import MilvusClient

    lite_path = str(Path(uri).resolve()) if is_lite(uri) else None
    if lite_path is not None:
        Path(lite_path).parent.mkdir(parents=True, exist_ok=True)
        _lite_acquire(lite_path)
    try:
        client = MilvusClient(uri=lite_path or uri, token=os.environ.get(TOKEN_ENV, ""), timeout=timeout)
    except failures() as exc:
        if lite_path is not None:
            _lite_release(lite_path)
            raise MilvusUnavailableError(
                f"cannot open the milvus-lite database {uri}: {reason(exc)}; milvus-lite lets one "
                "process open a database at a time, so stop the other one (a `rag-app serve`?) or "
                "point index.milvus_uri at a Milvus server"
            ) from None
        raise MilvusUnavailableError(
            f"cannot reach Milvus at {uri} (timeout {timeout:g} s): {reason(exc)}; check that the server "
            f"runs and listens there (index.milvus_uri, gRPC port 19530 by default) and that "
            f"${TOKEN_ENV} holds a valid token"
        ) from None
    return client, lite_path


@contextlib.contextmanager
def quiet_lite_server(uri: str) -> Iterator[None]:
    """Hide the traceback grpc logs when pymilvus asks milvus-lite for a call it lacks (AllocTimestamp,
    while waiting for a new collection's index; pymilvus carries on without it)."""
    if not is_lite(uri):
        yield
        return
    grpc_log = logging.getLogger("grpc._server")
    level = grpc_log.level
    grpc_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        grpc_log.setLevel(level)
