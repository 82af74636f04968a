"""API key checks that run before anything reads the request body, and limits on failed attempts.

    router = APIRouter(route_class=AuthFirstRoute)
    @router.get("/x", dependencies=READ)           # or ADMIN

A route whose dependencies hold a :class:`Require` checks the key first, then parses the body:
a request without a valid key gets 401 (or 429), never a parser's message about its body. The
dependency itself also documents the two key headers in the OpenAPI schema. The checks are the
app's :class:`Authenticator`, found on the request (``app.state.server.auth``, set by
``create_app``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.params import Depends as Dependency
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from rag_app.server.contract import ApiError
from rag_app.server.keys import ApiKey, KeyStore, Scope
from rag_app.server.limits import FailedAuthLimit, RateLimiter
from rag_app.server.observability import LOG, Metrics
from rag_app.settings import ServerSettings

_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rak_...`.")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (alternative header).")


def _presented(request: Request) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key`` (the first one present)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


class Authenticator:
    """Checks a request's key and scope, and applies the per-key and failed-authentication limits."""

    def __init__(self, settings: ServerSettings, keys: KeyStore, metrics: Metrics) -> None:
        self.settings = settings
        self.keys = keys
        self.metrics = metrics
        self.limiter = RateLimiter()
        self.failures = FailedAuthLimit(
            settings.failed_auth_per_minute,
            log=lambda message, extra: LOG.warning(message, extra=extra),
        )

    def authenticate(self, request: Request, scope: Scope) -> ApiKey | None:
        """The request's key (None when keys are off); raises :class:`ApiError` 401, 403 or 429."""
        s = self.settings
        client = _client(request)
        key: ApiKey | None = None
        if s.require_api_key:
            wait = self.failures.blocked(client)
            if wait > 0:
                self._refuse(
                    f"too many failed authentications from this address; retry in {_seconds(wait)} s", wait
                )
            presented = _presented(request)
            if not presented:
                self.failures.failed(client, "missing_api_key")
                raise ApiError(
                    401, "missing_api_key", "an API key is required: send `Authorization: Bearer KEY`",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
            key = self.keys.verify(presented)
            if key is None:
                self.failures.failed(client, "invalid_api_key")
                raise ApiError(
                    401, "invalid_api_key", "the API key is not valid", {"WWW-Authenticate": "Bearer"}
                )
            if not key.allows(scope):
                raise ApiError(403, "forbidden", f"this key's scope is {key.scope!r}; this needs {scope!r}")
            request.state.key_id = key.id
        per_minute = s.rate_limit_per_minute
        if key is not None and key.rate_limit_per_minute is not None:
            per_minute = key.rate_limit_per_minute
        wait = self.limiter.take(key.id if key else client, per_minute)
        if wait > 0:
            self._refuse(f"rate limit of {per_minute} requests a minute reached; retry later", wait)
        return key

    def _refuse(self, message: str, wait: float) -> None:
        self.metrics.rate_limited.inc()
        raise ApiError(429, "rate_limited", message, {"Retry-After": _seconds(wait)})


def _seconds(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def authenticator(request: Request) -> Authenticator:
    """The :class:`Authenticator` of the app serving ``request`` (``app.state.server.auth``)."""
    auth = getattr(getattr(request.app.state, "server", None), "auth", None)
    if not isinstance(auth, Authenticator):
        raise RuntimeError("the app has no rag-app server state: build it with create_app()")
    return auth


class Require:
    """The dependency of a route behind a key of ``scope``; :class:`AuthFirstRoute` runs it first."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def check(self, request: Request) -> None:
        request.state.api_key = authenticator(request).authenticate(request, self.scope)
        request.state.authenticated = True

    async def __call__(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER),  # noqa: B008 (the schema)
        api_key: str | None = Depends(_HEADER),
    ) -> ApiKey | None:
        if not getattr(request.state, "authenticated", False):  # on a route of another class
            self.check(request)
        key: ApiKey | None = request.state.api_key
        return key


class AuthFirstRoute(APIRoute):
    """A route that checks the key (a :class:`Require` among its dependencies) before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        requirements = [d.dependency for d in self.dependencies if isinstance(d.dependency, Require)]
        if not requirements:
            return handler

        async def authenticated_first(request: Request) -> Response:
            for requirement in requirements:
                requirement.check(request)
            return await handler(request)

        return authenticated_first


READ: tuple[Dependency, ...] = (Depends(Require("read")),)
"""The ``dependencies`` of a route that needs a key of read scope (or admin)."""
ADMIN: tuple[Dependency, ...] = (Depends(Require("admin")),)
"""The ``dependencies`` of a route that needs a key of admin scope."""
