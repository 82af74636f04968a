"""The REST API (``rag-app serve``): a thin FastAPI layer over the :class:`rag_app.RAG` facade.

Importing this package is cheap; FastAPI and uvicorn are imported by :mod:`rag_app.server.app`
and :mod:`rag_app.server.run`, which need the ``server`` extra (``pip install 'rag-app[server]'``).

- :mod:`rag_app.server.app`: ``create_app(settings)``, wiring the parts below.
- :mod:`rag_app.server.routes`: the routes, one router per area (ops, OpenAI chat, indexes, search).
- :mod:`rag_app.server.state`: what the routes share (:class:`~rag_app.server.state.ServerState`).
- :mod:`rag_app.server.middleware`: error bodies, request ids, logs and metrics, body limits, CORS.
- :mod:`rag_app.server.uploads`: uploaded files: checked, written atomically, undone when refused.
- :mod:`rag_app.server.auth`: API key checks that run before the body is read.
- :mod:`rag_app.server.openai_compat`: the OpenAI chat-completions request and response shapes.
- :mod:`rag_app.server.keys`: API keys, hashed at rest, with read or admin scope.
- :mod:`rag_app.server.limits`: per-key rate limits and request size limits.
- :mod:`rag_app.server.observability`: Prometheus metrics, JSON logs with a request id.
"""
