"""End to end with the packaged models: `rag-app ask` and `rag-app chat` in a subprocess, the real
SmolLM2 generator, the real guard, an index of the example documents; and the bad inputs a user
will try (empty or huge question, another language, a wrong index, a generator server that is down).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(settings, embedder, tmp_path_factory: pytest.TempPathFactory):
    # ``embedder`` makes sure the ONNX export is cached before the subprocesses start; conversations
    # go to a private data folder.
    data_dir = tmp_path_factory.mktemp("data")
    # One decoding thread and short answers keep the test quick even on a busy machine (torch's
    # worker threads spin when the cores are shared).
    env = {
        **os.environ,
        "RAG_APP_CACHE_DIR": str(settings.cache_dir),
        "RAG_APP_DATA_DIR": str(data_dir),
        "RAG_APP_GENERATOR__THREADS": "1",
        "RAG_APP_GENERATOR__MAX_NEW_TOKENS": "96",
        # the tiny model: fast (the 0.5B default is tested in test_default_model.py)
        "RAG_APP_GENERATOR__MODEL": "SmolLM2-135M-Instruct",
        "RAG_APP_GENERATOR__DTYPE": "float32",
    }
    env.pop("RAG_APP_CONFIG", None)

    def _run(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rag_app.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**env, **extra_env},
            timeout=600,
        )

    return _run


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, run) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "index"
    result = run("ingest", str(ROOT / "examples" / "docs"), "--index", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files_ingested"] == 3
    return folder


def test_ask_json_is_a_cited_grounded_answer(run, index: Path) -> None:
    result = run(
        "ask", "Which file format does rag-app use for the vector index?", "--index", str(index), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "SmolLM2-135M-Instruct"
    assert answer["citations"], answer
    for citation in answer["citations"]:
        assert citation["source"].endswith((".md", ".html", ".txt"))
        assert 0 <= citation["start"] < citation["end"]
    grounding = answer["grounding"]
    assert 0.0 <= grounding["score"] <= 1.0 and grounding["sentences"]
    for sentence in grounding["sentences"]:
        assert sentence["flagged"] == (sentence["score"] < sentence["threshold"])
    assert grounding["score"] <= min(s["score"] for s in grounding["sentences"]) + 1e-9
    if not answer["abstained"]:
        assert any(c["cited"] for c in answer["citations"])
        # every sentence the guard did not flag cites a source
        for sentence in grounding["sentences"]:
            if sentence["evidence"] and not sentence["flagged"]:
                assert sentence["citations"], sentence
    assert answer["timings"]["total"] > 0


def test_unrelated_question_abstains_and_shows_closest_passages(run, index: Path) -> None:
    result = run(
        "ask", "What is the boiling point of liquid nitrogen on Mars?", "--index", str(index), "--no-stream",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "I could not find the answer in the documents." in result.stdout
    assert "Closest passages:" in result.stdout
    assert "guard." not in result.stdout + result.stderr  # no setting names in what a user reads


def test_chat_streams_and_resolves_a_follow_up(run, index: Path) -> None:
    result = run(
        "chat", "--index", str(index),
        stdin="How do I install rag-app?\nAnd how do I run the tests?\n/exit\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("rag> ") == 2, result.stdout
    assert "conversation " in result.stdout
    # the conversation is stored: it can be continued by id
    conversation = result.stdout.split("conversation ", 1)[1].split()[0]
    again = run(
        "chat", "--index", str(index), "--conversation", conversation, stdin="/exit\n",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_bad_questions_get_one_clear_line(run, index: Path) -> None:
    empty = run("ask", "   ", "--index", str(index))
    assert empty.returncode != 0 and "empty" in empty.stderr.lower()
    assert len(empty.stderr.strip().splitlines()) == 1
    huge = run("ask", "why " * 25_000, "--index", str(index))
    assert huge.returncode != 0 and "characters" in huge.stderr and len(huge.stderr.strip().splitlines()) == 1
    missing = run("ask", "anything?", "--index", str(index.parent / "nope"))
    assert missing.returncode != 0 and "nope" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_question_in_another_language_does_not_crash(run, index: Path) -> None:
    result = run(
        "ask", "¿Qué formato de archivo usa el índice de vectores?", "--index", str(index), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["abstained"] or answer["citations"]


def test_generator_server_down_is_one_line_and_the_index_is_untouched(run, index: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = run("index", "stats", str(index), "--json")
    result = run(
        "ask", "How do I install rag-app?", "--index", str(index),
        RAG_APP_GENERATOR__BACKEND="openai",
        RAG_APP_GENERATOR__BASE_URL=f"http://127.0.0.1:{port}/v1",
    )  # fmt: skip
    assert result.returncode != 0
    assert "not reachable" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = run("index", "stats", str(index), "--json")
    assert json.loads(after.stdout)["chunks"] == json.loads(before.stdout)["chunks"] > 0
