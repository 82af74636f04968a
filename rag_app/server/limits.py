"""Per-key rate limits (token buckets) and request body size limits (an ASGI middleware)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RateLimiter:
    """One token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key: str, per_minute: int) -> float:
        """0.0 when the request may go ahead; else the seconds to wait before the next one."""
        if per_minute <= 0:
            return 0.0
        now = self._clock()
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit (FastAPI passes HTTPExceptions through as they are)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


class BodySizeLimit:
    """Refuses bodies over the limit with 413: at once from ``Content-Length``, else while reading.

    ``limit_for(path)`` gives the limit in bytes (uploads get a larger one than JSON requests).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(scope, send, limit)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(scope, send, limit)


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    state: dict[str, Any] = scope.get("state") or {}
    body = json.dumps(
        {
            "error": {
                "message": f"request body is larger than the limit of {limit:,} bytes",
                "type": "request_too_large",
                "code": 413,
                "request_id": state.get("request_id"),
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
