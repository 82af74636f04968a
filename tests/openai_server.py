"""A minimal OpenAI-compatible HTTP server for tests, backed by a real :class:`Generator`.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (plain JSON, or server-sent events
with ``data: {chunk}`` lines and ``data: [DONE]`` when ``stream`` is true) on 127.0.0.1, in a
thread, with the standard library's HTTP server. It records every request body, so tests can
check which model name a client asked for. A request for the model named ``SLEEPY`` waits
``sleep_s`` seconds before answering (for client timeouts).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rag_app.generation.base import Generator

SLEEPY = "sleepy"


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (a timeout test) is expected: no traceback for its closed socket."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class OpenAIServer:
    """``with OpenAIServer(generator, ["name"]).running() as url:`` serves at ``url`` (ending in ``/v1``)."""

    def __init__(self, generator: Generator, served_names: list[str], *, sleep_s: float = 3.0) -> None:
        self.generator = generator
        self.served_names = [*served_names, SLEEPY]
        self.sleep_s = sleep_s
        self.requests: list[dict[str, Any]] = []

    @contextmanager
    def running(self) -> Iterator[str]:
        server = _QuietServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="openai-test-server", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v1"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("logprobs") and body.get("max_tokens") == 1 and hasattr(self.generator, "verify"):
            return self.verdict(body)
        done = self.generator.generate(
            body["messages"],
            max_new_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature") or 0.0),
            stop=_stops(body),
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": "length" if done.finish_reason == "length" else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            },
        }

    def verdict(self, body: dict[str, Any]) -> dict[str, Any]:
        """One token with its top log-probabilities, as vLLM answers ``logprobs=true``: the served
        generator's own P(Yes) for the verifier's question."""
        import math

        p_yes = min(max(self.generator.verify(body["messages"]), 1e-6), 1 - 1e-6)  # type: ignore[attr-defined]
        top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}]
        first = top[0] if p_yes >= 0.5 else top[1]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": first["token"]},
                    "finish_reason": "length",
                    "logprobs": {"content": [{**first, "top_logprobs": top}]},
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }

    def chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        base: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk"}
        base.update(created=int(time.time()), model=body["model"])
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        for piece in self.generator.stream(
            body["messages"],
            max_new_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature") or 0.0),
            stop=_stops(body),
        ):
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop") or []
    return [stop] if isinstance(stop, str) else list(stop)


def _handler(app: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._json(404, _error(f"no route {self.path}"))
            data = [{"id": name, "object": "model", "owned_by": "test"} for name in app.served_names]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, _error(f"no route {self.path}"))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            app.requests.append(body)
            if body.get("model") not in app.served_names:
                return self._json(404, _error(f"The model `{body.get('model')}` does not exist."))
            if body["model"] == SLEEPY:
                time.sleep(app.sleep_s)
            if not body.get("stream"):
                return self._json(200, app.completion(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in app.chunks(body):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}
