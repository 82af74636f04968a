from __future__ import annotations

from pathlib import Path

import pytest

from rag_app.errors import ConfigError
from rag_app.settings import Settings


def test_precedence_file_env_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rag-app.toml"
    config.write_text("[retrieval]\nk = 9\nmode = 'bm25'\n[embedding]\nbatch_size = 8\n")
    monkeypatch.setenv("RAG_APP_RETRIEVAL__K", "11")
    settings = Settings.load(config, embedding={"batch_size": 4})
    assert settings.retrieval.k == 11
    assert settings.retrieval.mode == "bm25"
    assert settings.embedding.batch_size == 4
    origins = settings.origins()
    assert origins["retrieval.k"] == "env RAG_APP_RETRIEVAL__K"
    assert origins["retrieval.mode"] == f"file {config}"
    assert origins["embedding.batch_size"] == "argument"
    assert origins["chunking.chunk_tokens"] == "default"


def test_config_file_from_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rag-app.toml").write_text("[retrieval]\nk = 3\n")
    assert Settings.load().retrieval.k == 3
    other = tmp_path / "other.toml"
    other.write_text("[retrieval]\nk = 4\n")
    monkeypatch.setenv("RAG_APP_CONFIG", str(other))
    assert Settings.load().retrieval.k == 4


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[retrieval]\nk = 0\n")
    with pytest.raises(ConfigError, match=r"retrieval\.k"):
        Settings.load(config)
    config.write_text("[retrieval]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"retrieval\.bogus"):
        Settings.load(config)
    config.write_text("[retrieval\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(config)
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(tmp_path / "missing.toml")


def test_overlap_must_be_below_half_the_chunk() -> None:
    with pytest.raises(ConfigError, match=r"chunking\.overlap_tokens"):
        Settings.load(chunking={"chunk_tokens": 64, "overlap_tokens": 40})


def test_explain_lists_every_leaf() -> None:
    rows = Settings.load().explain()
    keys = [key for key, _, _ in rows]
    assert "embedding.model" in keys and "retrieval.fusion" in keys
    assert all(origin for _, _, origin in rows)


def test_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[1] / "rag-app.example.toml"
    settings = Settings.load(example)
    assert settings.embedding.model == "all-MiniLM-L6-v2"


def test_ui_paths_default_under_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ui.index and ui.reports_dir, unset, live under data_dir (and follow it), not the working dir."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.ui.index == tmp_path / "data" / "indexes" / "default"
    assert settings.ui.reports_dir == tmp_path / "data" / "eval-reports"
    settings.data_dir = tmp_path / "elsewhere"
    assert settings.ui.reports_dir == tmp_path / "elsewhere" / "eval-reports"
    given = Settings(data_dir=tmp_path / "data", ui={"index": "my-index"})
    assert given.ui.index == Path("my-index") and given.ui.reports_dir.parent == tmp_path / "data"
    origins = {key: origin for key, _, origin in settings.explain()}
    assert origins["ui.index"] == origins["ui.reports_dir"] == "default"
