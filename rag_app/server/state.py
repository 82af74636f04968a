"""What the routes share: one :class:`ServerState` per app, kept on ``app.state.server``.

    @router.get("/x")
    async def x(state: State) -> dict[str, Any]:
        name, rag = await state.open_index(None)        # the default index

Routes take it as a FastAPI dependency (:data:`State`); middleware and error handlers that see only
the request use :func:`server_state`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from rag_app.embeddings.base import Embedder
from rag_app.generation.base import Generator
from rag_app.rag import RAG
from rag_app.server.auth import Authenticator
from rag_app.server.contract import PublicPaths
from rag_app.server.keys import KeyStore
from rag_app.server.observability import Metrics
from rag_app.server.runtime import Indexes
from rag_app.settings import ServerSettings, Settings


@dataclass(frozen=True)
class ServerState:
    """The served indexes, the keys and their checks, the metrics, and where uploads are kept."""

    settings: ServerSettings
    indexes: Indexes
    metrics: Metrics
    keys: KeyStore
    auth: Authenticator
    public: PublicPaths
    """Rewrites a message for a client (paths relative to the roots it knows, others hidden)."""
    uploads_dir: Path

    @classmethod
    def build(
        cls, settings: Settings, *, embedder: Embedder | None = None, generator: Generator | None = None
    ) -> ServerState:
        """The state of an app over ``server.indexes_dir``; no model is loaded until a request needs it."""
        s = settings.server
        data = settings.data_dir
        indexes_dir = s.indexes_dir or data / "indexes"
        uploads_dir = s.uploads_dir or data / "uploads"
        metrics = Metrics()
        keys = KeyStore(s.api_keys_file or data / "api-keys.json")
        indexes = Indexes(
            settings, indexes_dir, embedder=embedder, generator=generator, on_tokens=metrics.tokens.inc
        )
        return cls(
            settings=s,
            indexes=indexes,
            metrics=metrics,
            keys=keys,
            auth=Authenticator(s, keys, metrics),
            public=PublicPaths([*s.ingest_roots, uploads_dir, indexes_dir]),
            uploads_dir=uploads_dir,
        )

    async def open_index(self, name: str | None, *, create: bool = False) -> tuple[str, RAG]:
        """The resolved name and :class:`RAG` of an index (``None``: the default), opened in a thread."""
        resolved = self.indexes.resolve(name)
        return resolved, await run_in_threadpool(lambda: self.indexes.get(resolved, create=create))


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    state = getattr(request.app.state, "server", None)
    if not isinstance(state, ServerState):
        raise RuntimeError("the app has no rag-app server state: build it with create_app()")
    return state


State = Annotated[ServerState, Depends(server_state)]
"""A route parameter that receives the app's :class:`ServerState`."""


def version() -> str:
    """The installed rag-app version (``0+unknown`` when it is not installed)."""
    try:
        return importlib.metadata.version("rag-app")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
