"""The FastAPI app: the routers of :mod:`rag_app.server.routes` over one :class:`ServerState`.

    from rag_app.server.app import create_app
    app = create_app(Settings.load())       # uvicorn serves it: `rag-app serve`

Every route is a thin call into :class:`rag_app.RAG`, run in a worker thread. Errors come back as
``{"error": {"message", "type", "code", "request_id"}}`` (:mod:`rag_app.server.middleware`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rag_app.embeddings.base import Embedder
from rag_app.generation.base import Generator
from rag_app.server.auth import AuthFirstRoute
from rag_app.server.middleware import add_error_handlers, add_middleware
from rag_app.server.observability import LOG
from rag_app.server.routes import chat, indexes, ops, search
from rag_app.server.state import ServerState, version
from rag_app.settings import Settings


def create_app(
    settings: Settings, *, embedder: Embedder | None = None, generator: Generator | None = None
) -> FastAPI:
    """The REST API over the indexes in ``server.indexes_dir``; models are shared by all indexes.

    ``embedder`` and ``generator`` replace the configured ones (tests, or an app that has them).
    """
    state = ServerState.build(settings, embedder=embedder, generator=generator)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _log_start(state)
        yield
        state.indexes.close()

    app = FastAPI(
        title="rag-app",
        version=version(),
        summary="Retrieval-augmented answers over your documents, with citations and a grounding check.",
        lifespan=lifespan,
    )
    app.router.route_class = AuthFirstRoute  # the key is checked before the body is read
    app.state.server = state
    add_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(ops.metrics_router(public=state.settings.public_metrics))
    app.include_router(chat.router)
    app.include_router(indexes.router)
    app.include_router(search.router)
    add_middleware(app, state)
    return app


def _log_start(state: ServerState) -> None:
    """Warn when keys are off or none exist yet, and name the served indexes."""
    s, keys = state.settings, state.keys
    if not s.require_api_key:
        LOG.warning("server.require_api_key is off: every request is treated as admin")
    elif not keys.list_keys():
        LOG.warning("no API keys in %s: create one with `rag-app serve keys add --scope admin`", keys.path)
    folder = state.indexes.folder
    LOG.info("serving indexes", extra={"indexes_dir": str(folder), "indexes": state.indexes.names()})
