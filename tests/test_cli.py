"""The real `rag-app` command in a subprocess: JSON outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def run(settings, embedder):
    # ``embedder`` makes sure the ONNX export is cached before the subprocesses start.
    env = {**os.environ, "RAG_APP_CACHE_DIR": str(settings.cache_dir)}
    env.pop("RAG_APP_CONFIG", None)

    def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rag_app.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=300,
        )

    return _run


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, run):
    docs = tmp_path_factory.mktemp("docs")
    (docs / "tides.md").write_text("# Tides\n\nThe moon's gravity pulls the oceans and causes tides.\n")
    (docs / "volcano.txt").write_text(
        "Lava from a volcano cools into basalt.\n\nMagma chambers feed eruptions."
    )
    (docs / "empty.txt").write_bytes(b"")
    folder = tmp_path_factory.mktemp("idx") / "index"
    result = run("ingest", str(docs), "--index", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "files_seen",
        "files_ingested",
        "files_unchanged",
        "files_failed",
        "chunks_added",
        "chunks_removed",
        "seconds",
    ):
        assert key in report
    assert report["files_ingested"] == 2
    assert any(item["path"].endswith("empty.txt") for item in report["files_skipped"])
    return folder


def test_search_json(run, index: Path) -> None:
    result = run("search", "what causes tides?", "--index", str(index), "-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 1
    hit = hits[0]
    assert hit["source"].endswith("tides.md")
    assert set(("text", "source", "page", "start", "end", "score")) <= set(hit)
    assert "moon" in hit["text"]


def test_search_human_output(run, index: Path) -> None:
    result = run("search", "basalt", "--index", str(index), "-k", "2")
    assert result.returncode == 0
    assert "volcano.txt" in result.stdout and "[1]" in result.stdout


def test_reingest_is_unchanged_and_stats(run, index: Path, tmp_path: Path) -> None:
    stats = json.loads(run("index", "stats", str(index), "--json").stdout)
    assert stats["documents"] == 2 and stats["chunks"] >= 2 and stats["embedding_model"] == "all-MiniLM-L6-v2"
    human = run("index", "stats", str(index))
    assert "index_type" in human.stdout


def test_errors_are_one_line_and_non_zero(run, tmp_path: Path, index: Path) -> None:
    missing = run("search", "x", "--index", str(tmp_path / "nope"))
    assert missing.returncode != 0
    assert missing.stderr.strip().startswith("error:") and len(missing.stderr.strip().splitlines()) == 1
    nothing = run("ingest", str(tmp_path / "does-not-exist"), "--index", str(tmp_path / "i"))
    assert nothing.returncode != 0 and "does not exist" in nothing.stderr
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    empty = run("ingest", str(empty_dir), "--index", str(tmp_path / "i2"))
    assert empty.returncode == 1 and "nothing could be ingested" in empty.stderr
    blank = run("search", "   ", "--index", str(index))
    assert blank.returncode == 2 and "empty" in blank.stderr
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[retrieval]\nk = -1\n")
    config_error = run("--config", str(bad_config), "config", "show")
    assert config_error.returncode == 2 and "retrieval.k" in config_error.stderr


def test_huge_file_is_skipped_with_a_reason(run, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    with (docs / "huge.txt").open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB without writing them
    (docs / "small.txt").write_text("Small files still get indexed next to huge ones.")
    result = run("ingest", str(docs), "--index", str(tmp_path / "i"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files_ingested"] == 1
    reasons = {Path(i["path"]).name: i["error"] for i in report["files_skipped"]}
    assert "larger than" in reasons["huge.txt"]


def test_config_show_and_models(run, tmp_path: Path) -> None:
    (tmp_path / "rag-app.toml").write_text("[retrieval]\nk = 7\n")
    shown = run("config", "show", "--json", cwd=tmp_path)
    data = json.loads(shown.stdout)
    assert data["retrieval.k"] == {"value": 7, "origin": f"file {Path('rag-app.toml')}"}
    assert data["cache_dir"]["origin"] == "env RAG_APP_CACHE_DIR"
    models = run("models", "--json")
    assert models.returncode == 0, models.stderr
    roles = {row["role"] for row in json.loads(models.stdout)}
    assert {"embedder", "generator"} <= roles


def test_help_lists_every_group(run) -> None:
    """The other packages' groups are mounted lazily and still listed, with their commands."""
    result = run("--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()}
    groups = {"adapters", "eval", "finetune", "guard", "index", "loop", "pretrain", "serve"}
    assert groups | {"ask", "chat", "config", "ingest", "models", "search", "ui"} <= listed
    finetune = run("finetune", "--help")
    assert finetune.returncode == 0, finetune.stderr
    for command in ("data", "sft", "preferences", "reward", "dpo", "rlhf", "reader"):
        assert f"  {command} " in finetune.stdout
    adapters = run("adapters", "--help").stdout
    assert all(f"  {c} " in adapters for c in ("ls", "show", "promote", "rollback", "merge"))
    assert all(f"  {c} " in run("pretrain", "--help").stdout for c in ("causal", "masked", "continued"))


def test_serve_one_index_folder(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rag-app serve --index DIR`: DIR's parent is the server's folder and DIR the default index.

    The server itself is not started (test_server.py starts `rag-app serve`); what it is given is checked.
    """
    from click.testing import CliRunner

    import rag_app.server.run
    from rag_app.cli import cli

    monkeypatch.delenv("RAG_APP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    given: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(rag_app.server.run, "serve", lambda s, **kw: given.append((s.server, kw)))
    served = CliRunner().invoke(cli, ["serve", "--index", str(index), "--port", "8123"])
    assert served.exit_code == 0, served.output
    (server, options) = given[0]
    assert server.indexes_dir == index.resolve().parent and server.default_index == index.name
    assert options == {"host": None, "port": 8123}

    both = CliRunner().invoke(cli, ["serve", "--index", str(index), "--default-index", "docs"])
    assert both.exit_code == 2 and "drop --indexes-dir and --default-index" in both.output
    missing = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "rag-app ingest" in missing.output
    hidden = tmp_path / ".rag-index"
    hidden.mkdir()
    unnamed = CliRunner().invoke(cli, ["serve", "--index", str(hidden)])
    assert unnamed.exit_code == 2 and "rename the folder" in unnamed.output
    assert len(given) == 1
