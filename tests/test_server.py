"""The REST API, served by a real uvicorn on 127.0.0.1 and driven by real clients.

The official ``openai`` client (plain and streaming), LangChain's ``ChatOpenAI`` with ``base_url``,
and plain HTTP (httpx) for the rest. Answers come from :class:`ScriptedAnswerGenerator`, a test
double that repeats the first sentence of source [1] and cites it, so that what is tested is the
HTTP layer (shapes, auth, limits, streaming, concurrency); retrieval, the guard and the index are
real. One test runs the packaged SmolLM2 behind the server, and one starts ``rag-app serve`` as a
subprocess.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("multipart")

import uvicorn

from rag_app.generation.base import Completion, Message
from rag_app.rag import RAG
from rag_app.server.app import create_app
from rag_app.server.keys import KeyStore
from rag_app.server.observability import JsonFormatter
from rag_app.settings import ServerSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
QUESTION = "Does rag-app need a GPU?"


class ScriptedAnswerGenerator:
    """Test double for the generator: answers with the first sentence of source [1], cited as ``[1]``.

    It records the ``max_new_tokens`` it was given and the most generations that ran at once.
    """

    model_id: str = "scripted-answer"
    adapter_id: str | None = None

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.max_new_tokens: list[int] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def _answer(self, messages: Sequence[Message]) -> str:
        match = re.search(r"\[1\] (.*?)(?:\n\n\[\d+\] |\n\nQuestion:)", messages[-1]["content"], flags=re.S)
        text = match.group(1).strip().split("\n")[-1] if match else "No sources."
        first = re.split(r"(?<=[.!?])\s", text)[0]
        return first.rstrip(".") + " [1]."

    @contextmanager
    def _running(self, max_new_tokens: int) -> Iterator[None]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.max_new_tokens.append(max_new_tokens)
        try:
            time.sleep(self.delay_s)
            yield
        finally:
            with self._lock:
                self.active -= 1

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int = 256, **_: Any) -> Completion:
        with self._running(max_new_tokens):
            text = self._answer(messages)
        return Completion(text=text, completion_tokens=len(text.split()), model=self.model_id)

    def stream(self, messages: Sequence[Message], *, max_new_tokens: int = 256, **_: Any) -> Iterator[str]:
        with self._running(max_new_tokens):
            text = self._answer(messages)
        yield from re.findall(r"\S+\s*", text)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, settings: Settings, embedder: Any) -> dict[str, Any]:
    """An index ``docs`` built from examples/docs, three keys, and the settings of a server over them."""
    base = tmp_path_factory.mktemp("server")
    indexes_dir = base / "indexes"
    RAG(indexes_dir / "docs", settings, embedder=embedder).ingest([DOCS])
    guard_ready = _guard_ready(indexes_dir / "docs", settings, embedder)
    roots = base / "roots"
    (roots / "notes").mkdir(parents=True)
    (roots / "notes" / "kettle.md").write_text(
        "# Kettle\n\nThe blue kettle in the staff kitchen boils water in ninety seconds.\n", encoding="utf-8"
    )
    (base / "secret.txt").write_text("The vault code is 4711.\n", encoding="utf-8")
    keys = KeyStore(base / "keys.json")
    s = settings.model_copy(deep=True)
    s.data_dir = base / "data"
    s.guard.enabled = guard_ready
    s.server = ServerSettings(
        indexes_dir=indexes_dir,
        default_index="docs",
        api_keys_file=keys.path,
        ingest_roots=[roots],
        cors_origins=["http://localhost:3000"],
        rate_limit_per_minute=10_000,
        max_body_kb=16,
        max_upload_mb=1,
    )
    return {
        "settings": s,
        "guard": guard_ready,
        "base": base,
        "roots": roots,
        "keys": keys,
        "admin": keys.add("admin", "test-admin")[1],
        "read": keys.add("read", "test-read")[1],
        "limited": keys.add("read", "test-limited", rate_limit_per_minute=3)[1],
    }


def _guard_ready(index: Path, settings: Settings, embedder: Any) -> bool:
    """Whether the hallucination guard's model is in place (the tests check grounding when it is)."""
    from rag_app.errors import RagAppError

    try:
        guard = RAG(index, settings, embedder=embedder).guard
        return guard is not None and guard.check("Paris.", ["Paris."], cited=None, context="") is not None
    except (RagAppError, OSError) as exc:
        print(f"guard model unavailable, testing without grounding: {exc}")
        return False


@pytest.fixture(scope="module")
def generator() -> ScriptedAnswerGenerator:
    return ScriptedAnswerGenerator(delay_s=0.02)


@pytest.fixture(scope="module")
def server(served: dict[str, Any], embedder: Any, generator: ScriptedAnswerGenerator) -> Iterator[LiveServer]:
    app = create_app(served["settings"], embedder=embedder, generator=generator)
    with LiveServer(app) as live:
        yield live


def _http(server: LiveServer, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


# -- the OpenAI-compatible endpoint with real clients ---------------------------------------------
def test_openai_client_chat_models_and_stream(server: LiveServer, served: dict[str, Any]) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=served["read"], max_retries=0)
    assert {"rag-app", "docs"} <= {m.id for m in client.models.list()}

    reply = client.chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}])
    text = reply.choices[0].message.content or ""
    assert text.endswith("[1].") and reply.choices[0].finish_reason == "stop"
    rag = (reply.model_extra or {})["rag"]
    assert rag["index"] == "docs" and not rag["abstained"] and rag["text"] == text
    assert rag["citations"][0]["number"] == 1 and rag["citations"][0]["cited"]
    assert "faq.txt" in rag["citations"][0]["source"] or "getting-started" in rag["citations"][0]["source"]
    if served["guard"]:
        assert rag["grounding"]["score"] > 0.5 and rag["grounding"]["sentences"]
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="rag-app",
            messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # same question, same passages, same (deterministic) answer
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert (last.model_extra or {})["rag"]["text"] == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_langchain_chat_openai(server: LiveServer, served: dict[str, Any]) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server.url + "/v1", api_key=served["read"], model="docs", max_retries=0)
    message = llm.invoke(QUESTION)
    assert isinstance(message.content, str) and message.content.endswith("[1].")
    pieces = [chunk.content for chunk in llm.stream(QUESTION)]
    assert len(pieces) > 2 and "".join(str(p) for p in pieces) == message.content


def test_max_tokens_is_passed_on_and_capped(
    server: LiveServer, served: dict[str, Any], generator: ScriptedAnswerGenerator
) -> None:
    body = {"model": "docs", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 7}
    with _http(server, served["read"]) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        assert generator.max_new_tokens[-1] == 7
        body["max_tokens"] = 10**6
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        assert generator.max_new_tokens[-1] == served["settings"].generator.max_new_tokens


# -- the rest over plain HTTP ----------------------------------------------------------------------
def test_health_openapi_cors_and_request_id(server: LiveServer) -> None:
    with _http(server) as http:
        health = http.get("/health", headers={"X-Request-ID": "trace-123"})
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.headers["x-request-id"] == "trace-123"
        assert len(http.get("/health").headers["x-request-id"]) == 32
        schema = http.get("/openapi.json").json()
        for path in (
            "/v1/chat/completions",
            "/v1/models",
            "/ingest",
            "/search",
            "/ask",
            "/indexes",
            "/metrics",
        ):
            assert path in schema["paths"]
        assert "/documents/{doc_id}" in schema["paths"]
        assert "multipart/form-data" in schema["paths"]["/ingest"]["post"]["requestBody"]["content"]
        preflight = http.options(
            "/search",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = http.options(
            "/search", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_search_ask_indexes_and_documents(server: LiveServer, served: dict[str, Any]) -> None:
    with _http(server, served["read"]) as http:
        hits = http.post(
            "/search", json={"query": "Can two programs write to the same index?", "k": 3}
        ).json()
        assert hits["index"] == "docs" and len(hits["hits"]) == 3
        assert "lock" in hits["hits"][0]["text"] and hits["hits"][0]["source"].endswith("faq.txt")
        bm25 = http.post(
            "/search", json={"query": "GPU", "index": "docs", "mode": "bm25", "formats": ["text"]}
        )
        assert bm25.status_code == 200 and all(h["source"].endswith(".txt") for h in bm25.json()["hits"])

        answer = http.post("/ask", json={"question": QUESTION, "index": "docs"}).json()
        assert answer["text"].endswith("[1].") and answer["citations"]
        assert not served["guard"] or answer["grounding"]["score"] > 0.5
        assert {"retrieval", "generation", "total"} <= set(answer["timings"])

        listed = http.get("/indexes").json()
        docs = next(i for i in listed["indexes"] if i["name"] == "docs")
        assert docs["documents"] == 3 and docs["chunks"] > 3 and "index" not in docs
        rows = http.get("/indexes/docs/documents").json()["documents"]
        assert sorted(Path(r["source"]).name for r in rows) == [
            "faq.txt",
            "getting-started.md",
            "index-format.html",
        ]


def test_upload_ingest_search_and_delete(server: LiveServer, served: dict[str, Any]) -> None:
    note = b"# Parking\n\nVisitors park on level minus two of the north garage, bay 17.\n"
    with _http(server, served["admin"]) as http:
        report = http.post(
            "/ingest",
            data={"index": "uploads"},
            files=[("files", ("../../parking.md", note, "text/markdown"))],
        )
        assert report.status_code == 200, report.text
        assert report.json()["files_ingested"] == 1 and report.json()["index"] == "uploads"
        assert report.json()["files"] == ["parking.md"]  # the name sent (its folder part dropped)
        assert str(served["settings"].data_dir) not in report.text
        hit = http.post("/search", json={"query": "where do visitors park", "index": "uploads"}).json()[
            "hits"
        ][0]
        assert "bay 17" in hit["text"]
        stored = Path(hit["source"])
        assert stored.name == "parking.md" and stored.is_relative_to(served["settings"].data_dir / "uploads")

        doc = http.get("/indexes/uploads/documents").json()["documents"][0]
        gone = http.delete(f"/documents/{doc['id']}", params={"index": "uploads"})
        assert gone.status_code == 200 and gone.json()["chunks_removed"] >= 1
        assert not stored.exists()
        assert http.get("/indexes/uploads/documents").json()["documents"] == []
        assert http.delete(f"/documents/{doc['id']}", params={"index": "uploads"}).status_code == 404

        for name, content in [
            ("fake.pdf", b"MZ\x90\x00 not a pdf"),
            ("tool.exe", b"MZ"),
            ("x.docx", b"text"),
        ]:
            refused = http.post("/ingest", data={"index": "uploads"}, files=[("files", (name, content))])
            assert refused.status_code == 415, name
            assert refused.json()["error"]["type"] == "unsupported_file_type"
        hidden = http.post("/ingest", data={"index": "uploads"}, files=[("files", (".bashrc", b"x"))])
        assert hidden.status_code == 400


def test_ingest_by_server_path_and_traversal(server: LiveServer, served: dict[str, Any]) -> None:
    roots: Path = served["roots"]
    outside = served["base"] / "secret.txt"
    (roots / "link.txt").unlink(missing_ok=True)
    with _http(server, served["admin"]) as http:
        ok = http.post("/ingest", json={"index": "notes", "paths": ["notes"]})
        assert ok.status_code == 200 and ok.json()["files_ingested"] == 1 and ok.json()["files"] == ["notes"]
        ok = http.post("/ingest", json={"index": "notes", "paths": [str(roots / "notes" / "kettle.md")]})
        assert ok.status_code == 200 and ok.json()["files_unchanged"] == 1
        assert ok.json()["files"] == ["notes/kettle.md"] and str(roots) not in ok.text  # relative to the root

        for bad in ["../secret.txt", "notes/../../secret.txt", str(outside), "/etc/passwd"]:
            refused = http.post("/ingest", json={"index": "notes", "paths": [bad]})
            assert refused.status_code == 403, bad
            assert refused.json()["error"]["type"] == "path_not_allowed"
        (roots / "link.txt").symlink_to(outside)
        try:
            linked = http.post("/ingest", json={"index": "notes", "paths": ["."]})
            assert linked.status_code == 403 and "links lead outside" in linked.json()["error"]["message"]
        finally:
            (roots / "link.txt").unlink()
        for bad_index in ["../docs", "a/b", ".hidden"]:
            refused = http.post("/ingest", json={"index": bad_index, "paths": ["notes"]})
            assert refused.status_code == 422, bad_index  # the schema's pattern for index names
        hits = http.post("/search", json={"query": "vault code", "index": "notes"}).json()["hits"]
        assert all("4711" not in h["text"] for h in hits)


def test_auth_scopes_and_revocation(server: LiveServer, served: dict[str, Any]) -> None:
    from openai import AuthenticationError, OpenAI

    search = {"query": "GPU"}
    with _http(server) as anonymous:
        missing = anonymous.post("/search", json=search)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "missing_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/v1/models").status_code == 401
        wrong = anonymous.post("/search", json=search, headers={"Authorization": "Bearer rak_00000000_nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "invalid_api_key"
        assert (
            anonymous.post("/search", json=search, headers={"X-API-Key": served["read"]}).status_code == 200
        )
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0).models.list()

    with _http(server, served["read"]) as reader:
        upload = reader.post("/ingest", data={"index": "docs"}, files=[("files", ("a.txt", b"hello"))])
        assert upload.status_code == 403 and upload.json()["error"]["type"] == "forbidden"
        assert reader.post("/ingest", json={"paths": ["notes"]}).status_code == 403
        assert reader.delete("/documents/1", params={"index": "docs"}).status_code == 403

    keys: KeyStore = served["keys"]
    key, token = keys.add("read", "short-lived")
    with _http(server, token) as temporary:
        assert temporary.post("/search", json=search).status_code == 200
        assert keys.revoke(key.id)
        assert temporary.post("/search", json=search).status_code == 401
    stored = served["keys"].path.read_text()
    assert token.split("_", 2)[2] not in stored and "sha256" in stored


def test_limits_and_malformed_requests(server: LiveServer, served: dict[str, Any]) -> None:
    from openai import NotFoundError, OpenAI

    with _http(server, served["read"]) as http:
        big = http.post("/search", json={"query": "x" * 20_000})
        assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b'{"query": "'
            for _ in range(40):
                yield b"y" * 1024
            yield b'"}'

        streamed = http.post("/search", content=chunked(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413

        bad = http.post("/search", content=b'{"query": "GPU",', headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_json"
        invalid = http.post("/search", json={"query": "GPU", "k": 0})
        assert invalid.status_code == 422 and "k" in invalid.json()["error"]["message"]
        empty = http.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]})
        assert empty.status_code == 400 and "last message" in empty.json()["error"]["message"]

        unknown = http.post("/search", json={"query": "GPU", "index": "nope"})
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "index_not_found"
        assert http.post("/ask", json={"question": "GPU?", "index": "nope"}).status_code == 404
        assert unknown.json()["error"]["request_id"] == unknown.headers["x-request-id"]
    with pytest.raises(NotFoundError, match="no index named"):
        OpenAI(base_url=server.url + "/v1", api_key=served["read"], max_retries=0).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": QUESTION}]
        )

    with _http(server, served["admin"]) as admin:
        huge = admin.post(
            "/ingest", data={"index": "uploads"}, files=[("files", ("big.txt", b"z" * 1_100_000))]
        )
        assert huge.status_code == 413
        text = admin.post("/ingest", content=b"paths=x", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415

    with _http(server, served["limited"]) as limited:
        statuses = [limited.get("/v1/models").status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        assert int(limited.get("/v1/models").headers["retry-after"]) >= 1


def test_twenty_concurrent_requests(
    server: LiveServer, served: dict[str, Any], generator: ScriptedAnswerGenerator
) -> None:
    chat = {"model": "docs", "messages": [{"role": "user", "content": QUESTION}]}

    def one(i: int) -> tuple[int, str]:
        with _http(server, served["read"]) as http:
            if i % 2:
                r = http.post("/search", json={"query": f"index lock writer {i}", "k": 2})
                return r.status_code, r.json()["hits"][0]["text"]
            r = http.post("/v1/chat/completions", json={**chat, "stream": i % 4 == 0})
            text = r.text if i % 4 == 0 else r.json()["choices"][0]["message"]["content"]
            return r.status_code, text

    generator.most_active = 0
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [status for status, _ in results] == [200] * 20
    assert all(text for _, text in results)
    assert all("data: [DONE]" in text for i, (_, text) in enumerate(results) if i % 4 == 0)
    assert generator.most_active == 1  # one generation at a time


def test_metrics_and_json_logs(
    server: LiveServer, served: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="rag_app.server"), _http(server, served["read"]) as http:
        http.post("/search", json={"query": "GPU"}, headers={"X-Request-ID": "log-me"})
        http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
        metrics = http.get("/metrics").text
    assert re.search(r'rag_http_requests_total\{method="POST",route="/search",status="200"\} \d', metrics)
    assert 'rag_http_request_seconds_bucket{le="0.1",method="POST",route="/v1/chat/completions"}' in metrics
    assert re.search(r"rag_generated_tokens_total [1-9]", metrics)
    assert re.search(r"rag_retrieval_seconds_count [1-9]", metrics)
    assert re.search(r"rag_generation_seconds_count [1-9]", metrics)
    assert "rag_guard_flagged_sentences_total" in metrics and "rag_rate_limited_total" in metrics
    assert 'rag_answers_total{abstained="false"}' in metrics
    record = next(r for r in caplog.records if getattr(r, "request_id", None) == "log-me")
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "request" and line["route"] == "/search" and line["status"] == 200
    assert line["key_id"] and line["ms"] > 0


def test_metrics_can_require_a_key(served: dict[str, Any], embedder: Any) -> None:
    s = served["settings"].model_copy(deep=True)
    s.server.public_metrics = False
    with LiveServer(create_app(s, embedder=embedder, generator=ScriptedAnswerGenerator())) as live:
        assert httpx.get(live.url + "/metrics").status_code == 401
        ok = httpx.get(live.url + "/metrics", headers={"Authorization": f"Bearer {served['read']}"})
        assert ok.status_code == 200


def test_keys_can_be_switched_off_for_local_use(served: dict[str, Any], embedder: Any) -> None:
    s = served["settings"].model_copy(deep=True)
    s.server.require_api_key = False
    s.server.rate_limit_per_minute = 2  # then limited per client address
    with LiveServer(create_app(s, embedder=embedder, generator=ScriptedAnswerGenerator())) as live:
        statuses = [httpx.get(live.url + "/v1/models").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


# -- the real model, and the real command ----------------------------------------------------------
@pytest.mark.slow
def test_real_smollm2_behind_the_server(served: dict[str, Any], embedder: Any) -> None:
    """The packaged SmolLM2 streams an answer through the server to the openai client.

    16 new tokens over 2 passages in a 300-token budget (prefill dominates on a CPU), one torch
    thread (on a busy 2-core machine two threads spin-wait on each other, 20 times slower).
    """
    from openai import OpenAI

    from rag_app.generation import create_generator

    s = served["settings"].model_copy(deep=True)
    s.generator.max_new_tokens = 16
    s.generator.context_tokens = 300
    s.generator.threads = 1
    s.guard.on_unsupported = "pass"  # a guard that only annotates holds nothing back: token by token
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()  # the backend sets torch's process-wide count: put it back after
    try:
        with LiveServer(create_app(s, embedder=embedder, generator=create_generator(s))) as live:
            client = OpenAI(base_url=live.url + "/v1", api_key=served["read"], max_retries=0, timeout=300)
            chunks = list(
                client.chat.completions.create(
                    model="docs",
                    messages=[{"role": "user", "content": QUESTION}],
                    stream=True,
                    extra_body={"k": 2},
                )
            )
    finally:
        torch.set_num_threads(threads)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    rag = next((c.model_extra or {})["rag"] for c in chunks if c.model_extra and "rag" in c.model_extra)
    assert streamed.strip() and rag["model"].startswith("SmolLM2") and rag["citations"]
    assert rag["abstained"] or not served["guard"] or rag["grounding"] is not None
    assert len(chunks) > 3  # token by token, not one block (with "withhold", cleared sentences)


def test_rag_app_serve_command(served: dict[str, Any], cache_dir: Path, tmp_path: Path) -> None:
    """`rag-app serve keys add`, then `rag-app serve` in a subprocess: JSON logs with the request id."""
    s = served["settings"]
    env = {
        **os.environ,
        "RAG_APP_CACHE_DIR": str(cache_dir),
        "RAG_APP_DATA_DIR": str(tmp_path),
        "RAG_APP_SERVER__INDEXES_DIR": str(s.server.indexes_dir),
        "RAG_APP_SERVER__DEFAULT_INDEX": "docs",
    }
    cmd = [sys.executable, "-m", "rag_app.cli"]
    added = subprocess.run(
        [*cmd, "serve", "keys", "add", "--scope", "read"], env=env, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("rak_") and token not in (tmp_path / "api-keys.json").read_text()
    listed = subprocess.run(
        [*cmd, "serve", "keys", "list", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(listed.stdout)[0]["scope"] == "read"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "rag-app serve did not start"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {token}", "X-Request-ID": "cli"}
        hits = httpx.post(url + "/search", json={"query": "GPU"}, headers=auth, timeout=60)
        assert hits.status_code == 200 and hits.json()["hits"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "cli" and line.get("route") == "/search" for line in lines), stderr
