"""The Milvus backend on a real milvus-lite, with the real embedder, FAISS and SQLite docstore."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from test_pipeline import FILES as PIPELINE_FILES

from rag_app.errors import ConfigError, IndexMismatchError
from rag_app.rag import RAG
from rag_app.store import milvus
from rag_app.store.manifest import Manifest

FILES = {
    **PIPELINE_FILES,
    "rocks.txt": "Granite is an igneous rock rich in quartz and feldspar; basalt cools from lava.",
}
QUESTIONS = ["how long should dough rise?", "Danube Black Sea", "storing energy at night", "igneous rock"]


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _on_milvus(settings, **changes):
    index = settings.index.model_copy(update={"backend": "milvus", **changes})
    return settings.model_copy(update={"index": index})


def _docstore_ids(index_dir: Path) -> set[int]:
    with sqlite3.connect(index_dir / "docstore.sqlite") as conn:
        return {row[0] for row in conn.execute("SELECT id FROM chunks")}


def _milvus_ids(index_dir: Path) -> set[int]:
    index = milvus.MilvusIndex.load(index_dir / Manifest.load(index_dir).vectors_file)
    try:
        return set(index.ids_where("id >= 0").tolist())
    finally:
        index.close()


def _top(rag: RAG, question: str, **options) -> list[tuple[str, str]]:
    return [(Path(h.source).name, h.text) for h in rag.search(question, k=3, **options)]


@pytest.fixture(autouse=True)
def _lite_servers_released() -> Iterator[None]:
    """Every test gives back the milvus-lite servers it started (the database locks with them)."""
    yield
    gc.collect()
    assert milvus.lite_servers() == []


def test_milvus_serves_the_faiss_hits_and_follows_replace_and_delete(
    tmp_path: Path, settings, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(milvus.TOKEN_ENV, "root:not-in-the-manifest")
    docs = _write(tmp_path / "docs", FILES)
    on_faiss = RAG(tmp_path / "faiss", settings, embedder=embedder)
    on_milvus = RAG(tmp_path / "milvus", _on_milvus(settings), embedder=embedder)
    on_faiss.ingest([docs])
    on_milvus.ingest([docs])

    manifest = Manifest.load(tmp_path / "milvus")
    assert (manifest.backend, manifest.index_type) == ("milvus", "milvus")
    assert manifest.index_params["uri"] == milvus.LITE_NAME  # inside the folder, so it can move
    assert manifest.index_params["collection"] == milvus.default_collection(tmp_path / "milvus")
    assert "not-in-the-manifest" not in (tmp_path / "milvus" / "manifest.json").read_text()
    assert (tmp_path / "milvus" / milvus.LITE_NAME).is_dir()

    def same_answers() -> None:
        for question in QUESTIONS:
            dense_milvus = on_milvus.search(question, k=3, mode="dense")
            dense_faiss = on_faiss.search(question, k=3, mode="dense")
            assert [(h.source, h.text) for h in dense_milvus] == [(h.source, h.text) for h in dense_faiss]
            assert [h.score for h in dense_milvus] == pytest.approx([h.score for h in dense_faiss], abs=1e-5)
            assert _top(on_milvus, question) == _top(on_faiss, question)  # hybrid, what ask retrieves
        for options in ({"source": "*.txt"}, {"formats": ["markdown"]}):  # allowed ids
            assert _top(on_milvus, "energy and rocks", mode="dense", **options) == _top(
                on_faiss, "energy and rocks", mode="dense", **options
            )
        assert _milvus_ids(tmp_path / "milvus") == _docstore_ids(tmp_path / "milvus")

    same_answers()
    assert _top(on_milvus, "how long should dough rise?")[0][0] == "cooking.txt"

    # replacing a document replaces its vectors; deleting one removes them
    before = _milvus_ids(tmp_path / "milvus")
    (docs / "solar.md").write_text(FILES["solar.md"] + "\n## Wind\n\nWind turbines spin in storms too.\n")
    on_faiss.ingest([docs])
    on_milvus.ingest([docs])
    assert not before <= _milvus_ids(tmp_path / "milvus")  # the old solar.md chunks are gone
    assert "Wind turbines" in on_milvus.search("wind turbines", k=1, mode="dense")[0].text
    same_answers()
    rivers = str((docs / "rivers.html").resolve())
    assert on_milvus.delete([rivers]) >= 1 and on_faiss.delete([rivers]) >= 1
    assert all(h.source != rivers for h in on_milvus.search("Danube", k=5, mode="dense"))
    same_answers()
    stats = on_milvus.stats()
    assert stats["vectors"] == stats["chunks"] and stats["derived_files_current"]
    on_milvus.close()
    on_faiss.close()


def test_a_failure_between_the_stores_is_reconciled_on_reopen(
    tmp_path: Path, settings, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _write(tmp_path / "docs", FILES)
    index_dir = tmp_path / "index"
    rag = RAG(index_dir, _on_milvus(settings), embedder=embedder)
    rag.ingest([docs])
    rag.close()

    # the docstore commits a replaced and a new document, then Milvus fails half-way through
    def broken_add(self, ids, vectors) -> None:
        raise OSError("simulated crash between the docstore commit and the Milvus upsert")

    monkeypatch.setattr(milvus.MilvusIndex, "add", broken_add)
    (docs / "cooking.txt").write_text("Sourdough needs a starter fed with flour and water every day.")
    _write(docs, {"tides.txt": "Tides rise and fall twice a day, pulled by the moon."})
    with pytest.raises(OSError, match="simulated crash"):
        RAG(index_dir, _on_milvus(settings), embedder=embedder).ingest([docs])
    monkeypatch.undo()
    gc.collect()
    # ... and a vector of a chunk the docstore never committed is left in Milvus too
    stray = milvus.MilvusIndex.load(index_dir / Manifest.load(index_dir).vectors_file)
    stray.add(np.array([10_000]), np.full((1, 384), 0.05, dtype=np.float32))
    stray.close()
    assert _milvus_ids(index_dir) != _docstore_ids(index_dir)
    with sqlite3.connect(index_dir / "docstore.sqlite") as conn:
        committed = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
    assert Manifest.load(index_dir).generation < committed  # the docstore is ahead of Milvus

    reopened = RAG.open(index_dir, settings, embedder=embedder)
    assert "Sourdough" in reopened.search("starter flour water", k=1, mode="dense")[0].text
    assert "Tides" in reopened.search("moon tides", k=1, mode="dense")[0].text
    assert _milvus_ids(index_dir) == _docstore_ids(index_dir)
    stats = reopened.stats()
    assert stats["vectors"] == stats["chunks"] and stats["derived_files_current"]
    reopened.close()


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from rag_app.rag import RAG
    from rag_app.settings import Settings
    from rag_app.store import milvus
    milvus.BATCH = 2
    real_add = milvus.MilvusIndex.add
    def add(self, ids, vectors):
        real_add(self, ids[:2], vectors[:2])  # one request reaches Milvus, then the process dies
        os.kill(os.getpid(), signal.SIGKILL)
    milvus.MilvusIndex.add = add
    settings = Settings(cache_dir=sys.argv[3], index={"backend": "milvus"})
    RAG(sys.argv[1], settings).ingest([sys.argv[2]])
    """
)


def test_kill_9_between_the_stores_is_repaired_on_reopen(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "docs", FILES)
    index_dir = tmp_path / "index"
    rag = RAG(index_dir, _on_milvus(settings), embedder=embedder)
    rag.ingest([docs])
    before_top = rag.search("how long should dough rise?", k=1)[0].chunk_id
    rag.close()  # milvus-lite lets one process at a time open the database
    gc.collect()
    more = _write(
        tmp_path / "more", {f"part{i}.txt": f"Part {i}: marble, slate and chalk." for i in range(6)}
    )

    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(index_dir), str(more), str(settings.cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_milvus_ids(index_dir)) < len(_docstore_ids(index_dir))  # died half-way

    reopened = RAG.open(index_dir, settings, embedder=embedder)
    assert reopened.search("how long should dough rise?", k=1)[0].chunk_id == before_top
    assert any("marble" in h.text for h in reopened.search("marble slate chalk", k=3, mode="dense"))
    assert _milvus_ids(index_dir) == _docstore_ids(index_dir)
    assert reopened.ingest([more]).files_unchanged == 6
    reopened.close()


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_unreachable_milvus_fails_clearly_and_leaves_the_index_as_it_was(
    tmp_path: Path, settings, embedder, silent_port: int
) -> None:
    docs = _write(tmp_path / "docs", FILES)
    index_dir = tmp_path / "index"
    rag = RAG(index_dir, settings, embedder=embedder)
    rag.ingest([docs])
    before = (index_dir / "manifest.json").read_text()
    top = _top(rag, "how long should dough rise?")
    (docs / "cooking.txt").write_text("Changed: sourdough needs a starter.")

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    for port in (closed_port, silent_port):
        uri = f"http://127.0.0.1:{port}"
        bad = _on_milvus(settings, milvus_uri=uri, milvus_timeout_s=1.0)
        with pytest.raises(milvus.MilvusUnavailableError, match=f"cannot reach Milvus at {uri}.*check"):
            RAG(index_dir, bad, embedder=embedder).ingest([docs])

    with pytest.raises(ConfigError, match=milvus.TOKEN_ENV):  # credentials never go in the URI
        RAG(
            index_dir,
            _on_milvus(settings, milvus_uri="http://root:secret@localhost:19530"),
            embedder=embedder,
        ).ingest([docs])
    assert (index_dir / "manifest.json").read_text() == before
    reopened = RAG.open(index_dir, settings, embedder=embedder)
    assert _top(reopened, "how long should dough rise?") == top  # the change was not committed
    reopened.close()
    rag.close()


def test_a_collection_of_another_dimension_is_refused(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "docs", FILES)
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    name = milvus.default_collection(index_dir)
    milvus.connect(milvus.LITE_NAME, name, 8, folder=index_dir).close()

    rag = RAG(index_dir, _on_milvus(settings), embedder=embedder)
    with pytest.raises(IndexMismatchError, match=rf"{name}.*8-dimension vectors.*gives 384"):
        rag.ingest([docs])
    assert rag.documents() == []  # nothing was written
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["backend"] == "faiss" and manifest["generation"] == 0
    rag.close()


def test_an_unreachable_milvus_answers_503_over_rest() -> None:
    """The REST contract maps the store being down to 503 (documented), not to a bare 500."""
    from rag_app.server.contract import status_of
    from rag_app.store.milvus import MilvusUnavailableError

    assert status_of(MilvusUnavailableError("http://127.0.0.1:1 did not answer")) == 503
