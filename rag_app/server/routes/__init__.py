"""The routes, one :class:`fastapi.APIRouter` per area; ``create_app`` includes them.

- :mod:`.ops`: ``/health`` and ``/metrics``.
- :mod:`.chat`: the OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions``.
- :mod:`.indexes`: ``/indexes``, their documents, ``/ingest`` (uploads or server paths), deletes.
- :mod:`.search`: ``/search`` and ``/ask``.

Each route is a thin call into :class:`rag_app.RAG`, run in a worker thread; what they share is
the app's :class:`rag_app.server.state.ServerState`.
"""
