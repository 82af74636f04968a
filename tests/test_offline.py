"""Everything the defaults need works with the network blocked, and importing rag_app stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag_app.offline import OFFLINE_ENV, enforce_offline
from rag_app.settings import Settings

BLOCK_NETWORK = textwrap.dedent(
    """
    import socket

    def _blocked(*args, **kwargs):
        raise OSError("network access attempted while the test blocks it")

    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
    """
)

HF_VARIABLES = [*OFFLINE_ENV, "HF_HOME", "HF_ENDPOINT", "TOKENIZERS_PARALLELISM"]


def _run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in HF_VARIABLES and not k.startswith("RAG_APP_")}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # an empty hub cache: nothing to fall back on
    script = BLOCK_NETWORK + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def test_enforce_offline_sets_defaults_and_respects_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    enforce_offline(allow_network=True)
    assert "HF_HUB_OFFLINE" not in os.environ
    enforce_offline(allow_network=False)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert os.environ["DO_NOT_TRACK"] == "0"  # the user's explicit value wins
    assert "TOKENIZERS_PARALLELISM" not in OFFLINE_ENV


def test_importing_rag_app_is_light_and_side_effect_free() -> None:
    code = (
        "import os, sys, rag_app, rag_app.settings, rag_app.models, rag_app.offline, rag_app.embeddings; "
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'onnxruntime', 'sentence_transformers') "
        "if m in sys.modules]; print(heavy, 'HF_HUB_OFFLINE' in os.environ)"
    )
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[] False"


@pytest.mark.slow
def test_default_models_work_with_the_network_blocked(settings: Settings, tmp_path: Path) -> None:
    from rag_app.models import generator_folder

    folder = generator_folder(settings)  # converted once a session (see test_models.py)
    code = f"""
    import json, os
    from rag_app.settings import Settings
    from rag_app.models import resolve_embedder, resolve_generator, generator_folder
    from rag_app.embeddings import create_embedder

    fresh = Settings(cache_dir={str(tmp_path / "cache")!r})
    kinds = [resolve_embedder(fresh.embedding.model, fresh).kind]
    kinds.append(resolve_generator(fresh.generator.model, fresh).kind)
    embedder = create_embedder(fresh)
    vectors = embedder.embed_documents(["offline retrieval", "no network needed here"])
    query = embedder.embed_query("is the network needed?")
    shared = Settings(cache_dir={str(settings.cache_dir)!r}, generator={{"model": "SmolLM2-135M-Instruct"}})
    folder = generator_folder(shared)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer.apply_chat_template([{{"role": "user", "content": "hi"}}], add_generation_prompt=True)
    print(json.dumps({{
        "kinds": kinds, "shape": list(vectors.shape), "query": list(query.shape), "folder": str(folder),
        "onnx": embedder.onnx_file.is_file(),
        "tokens": len(ids if isinstance(ids, list) else ids["input_ids"]),
        "offline": os.environ.get("HF_HUB_OFFLINE"), "params": sum(p.numel() for p in model.parameters()),
    }}))
    """
    result = _run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["kinds"] == ["packaged", "packaged"]
    assert report["shape"] == [2, 384] and report["query"] == [384] and report["onnx"]
    assert report["folder"] == str(folder) and report["tokens"] > 3 and report["params"] > 100_000_000
    assert report["offline"] == "1"


def test_blocked_network_really_blocks(tmp_path: Path) -> None:
    result = _run_blocked("import socket; socket.create_connection(('127.0.0.1', 9))", tmp_path)
    assert result.returncode != 0 and "network access attempted" in result.stderr
