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


class FailedAuthLimit:
    """Failed authentications per client address, counted in fixed windows of ``window_s`` seconds.

    Past ``per_window`` failures an address is refused (429) until its window ends, whatever key it
    sends: once blocked, no key from it is even checked, so guessing keys gets nowhere. The first
    failure of a window and the moment an address is blocked are each logged once per window.
    """

    def __init__(
        self,
        per_window: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None,
    ) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        self._log = log
        self._windows: dict[str, list[float]] = {}  # client -> [window start, failures]
        self._lock = threading.Lock()

    def _window(self, client: str, now: float) -> list[float]:
        window = self._windows.get(client)
        if window is None or now - window[0] >= self.window_s:
            if len(self._windows) > 10_000:  # forget ended windows (a scan of many addresses)
                self._windows = {c: w for c, w in self._windows.items() if now - w[0] < self.window_s}
            window = self._windows[client] = [now, 0.0]
        return window

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0.0 when it is not blocked."""
        if self.per_window <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            window = self._windows.get(client)
            if window is None or now - window[0] >= self.window_s or window[1] < self.per_window:
                return 0.0
            return window[0] + self.window_s - now

    def failed(self, client: str, reason: str) -> None:
        """Count one failure of ``client`` (the ``per_window``-th blocks it for the rest of the window)."""
        if self.per_window <= 0:
            return
        now = self._clock()
        with self._lock:
            window = self._window(client, now)
            window[1] += 1
            failures = int(window[1])
        extra = {"client": client, "reason": reason, "failures": failures, "window_s": self.window_s}
        if failures == 1:
            self._log("failed authentication (more from this address in this window are counted)", extra)
        if failures == self.per_window:
            self._log("too many failed authentications: address refused until the window ends", extra)
