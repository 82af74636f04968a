"""Run the app with uvicorn (``rag-app serve``)."""

from __future__ import annotations

from rag_app.settings import Settings


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted. One process holds one copy of the models; scale out with replicas
    behind a load balancer (the server keeps no state between requests)."""
    import uvicorn

    from rag_app.server.app import create_app
    from rag_app.server.observability import configure_logging

    configure_logging(settings.server.json_logs)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        access_log=False,  # RequestContext logs each request, with its id, as JSON
        log_config=None,
        timeout_graceful_shutdown=10,
    )
