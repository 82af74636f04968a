"""Issue 14 on the REST API: failed logins limited, ids checked, keys before bodies, the contract held.

Each test drives a real uvicorn on 127.0.0.1 (the fixtures of ``test_server.py``); the contract
test runs schemathesis against the live server with an admin key.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from test_server import LiveServer, ScriptedAnswerGenerator, served  # noqa: F401  (the fixture)

from rag_app.server.app import create_app
from rag_app.server.contract import HIDDEN, PublicPaths
from rag_app.server.limits import FailedAuthLimit
from rag_app.settings import Settings


@pytest.fixture(scope="module")
def server(served: dict[str, Any], embedder: Any) -> Iterator[LiveServer]:  # noqa: F811
    """The server of test_server.py's index and keys (failed logins are counted, and not limited here)."""
    s: Settings = served["settings"].model_copy(deep=True)
    s.server.failed_auth_per_minute = 0
    with LiveServer(create_app(s, embedder=embedder, generator=ScriptedAnswerGenerator())) as live:
        yield live


def _http(server: LiveServer, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


# -- 4: failed authentications --------------------------------------------------------------------
def test_wrong_keys_are_limited_per_address_and_logged_once_per_window(
    served: dict[str, Any],  # noqa: F811
    embedder: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s: Settings = served["settings"].model_copy(deep=True)
    s.server.failed_auth_per_minute = 5
    app = create_app(s, embedder=embedder, generator=ScriptedAnswerGenerator())
    with caplog.at_level(logging.INFO, logger="rag_app.server"), LiveServer(app) as live, _http(live) as http:
        statuses = []
        for i in range(12):
            headers = {"Authorization": f"Bearer rak_0000000{i % 10}_guess{i}"} if i % 3 else {}
            statuses.append(http.get("/v1/models", headers=headers).status_code)
        assert statuses == [401] * 5 + [429] * 7
        refused = http.get("/v1/models", headers={"Authorization": f"Bearer {served['read']}"})
        assert refused.status_code == 429  # blocked: no key from this address is even checked
        assert refused.json()["error"]["type"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert http.get("/health").status_code == 200  # what needs no key still answers
        assert "rag_rate_limited_total 8.0" in http.get("/metrics").text
    warnings = [r for r in caplog.records if r.name == "rag_app.server" and r.levelno == logging.WARNING]
    assert [r.getMessage().split(" (")[0].split(":")[0] for r in warnings] == [
        "failed authentication",
        "too many failed authentications",
    ]  # 5 failures and 8 refusals: two lines in the window
    assert all(getattr(r, "client", None) == "127.0.0.1" for r in warnings)


def test_failed_auth_windows_end_and_are_per_address() -> None:
    now = [0.0]
    lines: list[str] = []
    limit = FailedAuthLimit(
        3, window_s=60, clock=lambda: now[0], log=lambda message, _: lines.append(message)
    )
    for _ in range(3):
        assert limit.blocked("10.0.0.1") == 0.0
        limit.failed("10.0.0.1", "invalid_api_key")
    now[0] = 20.0
    assert limit.blocked("10.0.0.1") == pytest.approx(40.0)
    assert limit.blocked("10.0.0.2") == 0.0  # another address is not held back
    now[0] = 60.0
    assert limit.blocked("10.0.0.1") == 0.0  # the window ended
    limit.failed("10.0.0.1", "invalid_api_key")
    assert len(lines) == 3  # first failure, blocked, first failure of the next window
    assert FailedAuthLimit(0).blocked("x") == 0.0  # 0 switches it off


# -- 5: document ids in the path --------------------------------------------------------------------
def test_document_ids_are_validated_in_the_path(server: LiveServer, served: dict[str, Any]) -> None:  # noqa: F811
    with _http(server, served["admin"]) as http:
        for bad in ["1180591620717411303424", "9223372036854775808", "0", "-1", "x"]:
            answer = http.delete(f"/documents/{bad}", params={"index": "docs"})
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["error"]["type"] == "invalid_request" and "doc_id" in answer.text
        missing = http.delete("/documents/9223372036854775807", params={"index": "docs"})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "document_not_found"
        operation = http.get("/openapi.json").json()["paths"]["/documents/{doc_id}"]["delete"]
    assert {"404", "422"} <= set(operation["responses"])
    (doc_id,) = [p for p in operation["parameters"] if p["name"] == "doc_id"]
    assert doc_id["schema"]["minimum"] == 1 and doc_id["schema"]["maximum"] == 2**63 - 1


# -- 6: the key before the body ---------------------------------------------------------------------
def test_the_key_is_checked_before_the_body_is_parsed(server: LiveServer, served: dict[str, Any]) -> None:  # noqa: F811
    broken, as_json = b'{"query": "GPU",', {"Content-Type": "application/json"}
    with _http(server) as anonymous:
        for path in ["/search", "/ask", "/v1/chat/completions", "/ingest"]:
            answer = anonymous.post(path, content=broken, headers=as_json)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["type"] == "missing_api_key"
            assert "JSON" not in answer.text
        wrong = anonymous.post(
            "/search", content=b"{", headers={"Authorization": "Bearer rak_1_x", **as_json}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "invalid_api_key"
        schema_error = anonymous.post("/search", json={"query": 7})
        assert schema_error.status_code == 401  # no schema details for a client without a key
    with _http(server, served["read"]) as reader:
        assert reader.post("/ingest", content=broken, headers=as_json).status_code == 403
        bad = reader.post("/search", content=broken, headers=as_json)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_json"


# -- 8: the contract, strict where it says so -------------------------------------------------------
def test_booleans_are_strict_and_the_upload_schema_says_what_is_required(
    server: LiveServer,
    served: dict[str, Any],  # noqa: F811
) -> None:
    with _http(server, served["admin"]) as http:
        for value in [0, 1, "true", "yes"]:
            answer = http.post("/search", json={"query": "GPU", "mmr": value})
            assert answer.status_code == 422, (value, answer.text)
            assert "mmr" in answer.json()["error"]["message"]
            prune = http.post("/ingest", json={"index": "notes", "paths": ["notes"], "prune": value})
            assert prune.status_code == 422, (value, prune.text)
        assert http.post("/search", json={"query": "GPU", "mmr": False}).status_code == 200
        schema = http.get("/openapi.json").json()
    upload = schema["paths"]["/ingest"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["files"]["minItems"] == 1
    for path, method in [("/search", "post"), ("/ask", "post"), ("/v1/chat/completions", "post")]:
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "401", "404", "413", "422", "429"} <= set(responses), path
        assert responses["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }


# -- 9: no server paths in error bodies ---------------------------------------------------------------
def test_error_bodies_name_no_server_paths(
    server: LiveServer,
    served: dict[str, Any],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    roots: Path = served["roots"]
    outside: Path = served["base"] / "secret.txt"
    private = [str(served["base"]), str(served["base"].resolve()), str(roots.resolve())]
    link = roots / "notes" / "leak.txt"
    link.unlink(missing_ok=True)
    with caplog.at_level(logging.INFO, logger="rag_app.server"), _http(server, served["admin"]) as http:
        bodies = []
        for bad in [str(outside), str(roots / ".." / "secret.txt"), "/etc/passwd"]:
            refused = http.post("/ingest", json={"index": "notes", "paths": [bad]})
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "path_not_allowed"
            bodies.append(refused.text)
        link.symlink_to(outside)
        try:
            linked = http.post("/ingest", json={"index": "notes", "paths": [str(roots / "notes")]})
        finally:
            link.unlink()
        assert linked.status_code == 403, linked.text
        assert linked.json()["error"]["message"].endswith(f"roots: {HIDDEN}")  # where it leads is private
        bodies.append(linked.text)
        missing = http.post("/ingest", json={"index": "notes", "paths": [str(roots / "notes" / "gone.md")]})
        assert missing.status_code == 422 and "notes/gone.md" in missing.json()["error"]["message"]
        bodies.append(missing.text)
    for body in bodies:
        assert not any(p in body for p in private) and "/etc/passwd" not in body, body
    logged = " ".join(str(getattr(r, "detail", "")) for r in caplog.records)
    assert str(outside) in logged and "/etc/passwd" in logged  # the full paths, server-side


def test_public_paths_rewrites_only_server_paths(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    public = PublicPaths([root])
    assert (
        public(f"nothing to ingest: {root}/a/b.md does not exist")
        == "nothing to ingest: a/b.md does not exist"
    )
    assert public(f"'{root}' is locked") == "'.' is locked"
    assert public("links lead outside: /srv/outside/secret.txt, /etc/passwd") == (
        f"links lead outside: {HIDDEN}, {HIDDEN}"
    )
    for untouched in [
        "send multipart/form-data (files) or application/json (paths)",
        "no index named 'x'; GET /indexes lists them",
        "the server http://127.0.0.1:8000/v1 did not answer",
        "index name '../docs' is not allowed",
    ]:
        assert public(untouched) == untouched


# -- 8: schemathesis against the live server --------------------------------------------------------
CONTRACT_CONFIG = Path(__file__).with_name("schemathesis.toml")
CONTRACT_EXAMPLES = 30
"""Test cases per operation and phase: with the fixed seed, about a minute on two busy cores."""


@pytest.fixture(scope="module")
def contract_server(
    served: dict[str, Any],  # noqa: F811
    embedder: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """A server over its own copy of the index: the fuzzer may ingest, prune and delete there."""
    base = tmp_path_factory.mktemp("contract")
    s: Settings = served["settings"].model_copy(deep=True)
    assert s.server.indexes_dir is not None
    shutil.copytree(s.server.indexes_dir / "docs", base / "indexes" / "docs")
    s.data_dir = base / "data"
    s.server.indexes_dir = base / "indexes"
    s.server.failed_auth_per_minute = 0  # schemathesis sends requests without the key on purpose
    with LiveServer(create_app(s, embedder=embedder, generator=ScriptedAnswerGenerator())) as live:
        yield live


def test_the_live_server_keeps_its_openapi_contract(
    contract_server: LiveServer,
    served: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    """``schemathesis run`` against the live server with an admin key: every check, every operation.

    Positive and negative cases from the examples, coverage and fuzzing phases; a fixed seed and
    deterministic generation, so a failure here is reproducible with the command in the message.
    """
    pytest.importorskip("schemathesis")
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONTRACT_CONFIG),
        "run", contract_server.url + "/openapi.json",
        "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(CONTRACT_EXAMPLES), "--seed", "14", "--generation-deterministic",
        "--workers", "1", "--request-timeout", "60",
        "--header", f"Authorization: Bearer {served['admin']}",
        "--report", "json", "--report-json-path", str(report), "--no-color", "--output-truncate", "false",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    shown = " ".join(command).replace(served["admin"], "KEY")
    assert run.returncode == 0, f"{shown}\n{run.stdout[-20000:]}\n{run.stderr[-2000:]}"
    summary = json.loads(report.read_text(encoding="utf-8"))
    operations, cases = summary["operations"], summary["test_cases"]
    assert operations["tested"] == operations["total"] == len(_operations(contract_server)), operations
    assert cases["generated"] >= 20 * operations["tested"] and cases["unique_failures"] == 0, cases
    assert summary["failures"] == [] and summary["errors"] == [], summary


def _operations(server: LiveServer) -> list[str]:
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    return [f"{method.upper()} {path}" for path, methods in paths.items() for method in methods]
