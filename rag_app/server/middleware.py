"""What wraps every route: error bodies, the request id, a log line and metrics, body limits, CORS.

    add_error_handlers(app)
    add_middleware(app, state)      # after the routes; RequestContext ends up outermost

Errors come back as ``{"error": {"message", "type", "code", "request_id"}}`` (the OpenAI shape,
so OpenAI clients show the message), with the status from :data:`rag_app.server.contract.STATUS`.
The key is checked before the body is read by the routes' class
(:class:`rag_app.server.auth.AuthFirstRoute`), not here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_app import errors
from rag_app.server.contract import ApiError, describe, error_body, kind_of, status_of
from rag_app.server.limits import BodySizeLimit
from rag_app.server.observability import LOG, Metrics
from rag_app.server.state import ServerState, server_state
from rag_app.server.uploads import UPLOAD_ROUTE, upload_limit


def json_error(request: Request, status: int, kind: str, message: str, headers: Any = None) -> JSONResponse:
    """An error answer; server paths in ``message`` are made relative or hidden (and logged whole)."""
    rid = getattr(request.state, "request_id", None)
    shown = server_state(request).public(message)
    if shown != message:  # the client sees paths relative to the roots it knows; the log, all
        LOG.info("error with server paths", extra={"request_id": rid, "status": status, "detail": message})
    return JSONResponse(error_body(status, kind, shown, rid), status_code=status, headers=headers)


async def _rag_error(request: Request, exc: errors.RagAppError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        LOG.error("request failed: %s", exc, extra={"request_id": getattr(request.state, "request_id", None)})
    return json_error(request, status, kind_of(exc), str(exc))


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return json_error(request, exc.status, exc.kind, exc.message, exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
        exc.status_code, "http"
    )
    return json_error(request, exc.status_code, kind, str(exc.detail), exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = list(exc.errors())
    invalid_json = [p for p in problems if p.get("type") == "json_invalid"]
    if invalid_json:
        where = invalid_json[0].get("ctx", {}).get("error", "")
        return json_error(request, 400, "invalid_json", f"the request body is not valid JSON: {where}")
    return json_error(request, 422, "invalid_request", describe(problems))


def add_error_handlers(app: FastAPI) -> None:
    """Library errors, edge decisions, HTTP errors and invalid requests, each as an error body."""
    app.exception_handler(errors.RagAppError)(_rag_error)
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)


def add_middleware(app: FastAPI, state: ServerState) -> None:
    """Body size limits (uploads get their own), CORS when origins are set, and :class:`RequestContext`."""
    s = state.settings
    json_bytes, upload_bytes = s.max_body_kb * 1024, upload_limit(s)
    app.add_middleware(
        BodySizeLimit, limit_for=lambda path: upload_bytes if path == UPLOAD_ROUTE else json_bytes
    )
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext, metrics=state.metrics)  # added last: the outermost


class RequestContext:
    """Outermost middleware: a request id (``X-Request-ID``), one JSON log line and metrics per request.

    Latency runs to the end of the response body (a whole stream). Unexpected errors become a 500
    JSON body with the request id, and are logged with their traceback.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            LOG.exception("unhandled error", extra={"request_id": rid})
            if not started:
                response = JSONResponse(
                    error_body(500, "internal", "internal server error", rid), status_code=500
                )
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(route=template, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=template, method=method).observe(seconds)
            state = scope.get("state", {})
            LOG.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": method,
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "key_id": state.get("key_id"),
                    "client": (scope.get("client") or ("?",))[0],
                },
            )
