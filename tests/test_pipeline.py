"""Ingest end to end with the real packaged embedder, real FAISS and real SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rag_app.errors import IndexLockedError, IndexMismatchError, IngestError, QueryError
from rag_app.rag import RAG
from rag_app.store.index import IndexStore
from rag_app.store.manifest import Manifest

FILES = {
    "solar.md": "# Solar power\n\nPhotovoltaic panels convert sunlight into electricity.\n\n"
    "## Storage\n\nBatteries store the surplus energy for the night.\n",
    "cooking.txt": "To bake bread, knead the dough for ten minutes and let it rise for an hour.\n\n"
    "A hot oven at 230 degrees gives a crisp crust.",
    "rivers.html": "<html><head><title>Rivers</title></head><body><h1>Rivers</h1>"
    "<p>The Danube flows through ten countries before reaching the Black Sea.</p></body></html>",
}


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    _write(tmp_path / "docs", FILES)
    return tmp_path / "docs"


def test_ingest_search_and_incremental_updates(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    first = rag.ingest([corpus])
    assert first.files_seen == 3 and first.files_ingested == 3 and first.files_failed == []
    assert first.chunks_added == first.chunks_embedded >= 3

    hits = rag.search("how long should dough rise?", k=2)
    assert hits[0].source.endswith("cooking.txt")
    assert hits[0].text in (corpus / "cooking.txt").read_text()
    assert hits[0].scores  # per-retriever scores are kept
    assert rag.search("Danube Black Sea", k=1, mode="bm25")[0].source.endswith("rivers.html")
    assert rag.search("Danube", k=3, formats=["markdown"])[0].source.endswith("solar.md")
    assert all(h.source.endswith(".txt") for h in rag.search("energy", k=3, source="*.txt"))

    # unchanged: nothing embedded, nothing added
    again = rag.ingest([corpus])
    assert again.files_unchanged == 3 and again.files_ingested == 0
    assert again.chunks_embedded == 0 and again.chunks_added == 0

    # changed file: its chunks are replaced; the unchanged paragraph is not embedded again
    (corpus / "solar.md").write_text(FILES["solar.md"] + "\n## Wind\n\nWind turbines spin in storms too.\n")
    changed = rag.ingest([corpus])
    assert changed.files_ingested == 1 and changed.files_unchanged == 2
    assert changed.chunks_removed >= 1 and changed.chunks_added >= 1
    assert changed.chunks_reused >= 1
    assert "Wind turbines" in rag.search("wind turbines", k=1)[0].text

    # deleted file: removed with --prune
    (corpus / "rivers.html").unlink()
    pruned = rag.ingest([corpus], prune=True)
    assert pruned.files_removed == 1
    assert all(not h.source.endswith("rivers.html") for h in rag.search("Danube", k=5))
    stats = IndexStore.open(tmp_path / "index").stats()
    assert stats["documents"] == 2 and stats["vectors"] == stats["chunks"]
    manifest = Manifest.load(tmp_path / "index")
    assert manifest.embedding_model == "all-MiniLM-L6-v2" and manifest.dimension == 384
    assert manifest.index_type == "flat"


def test_bad_inputs_are_reported_and_skipped(tmp_path: Path, settings, embedder) -> None:
    docs = tmp_path / "docs"
    _write(docs, {"good.txt": "Granite is an igneous rock rich in quartz and feldspar."})
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.bin").write_bytes(os.urandom(2048))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    report = rag.ingest([docs, tmp_path / "missing.txt"])
    assert report.files_ingested == 1
    problems = {Path(item["path"]).name: item["error"] for item in report.files_failed + report.files_skipped}
    assert "broken.pdf" in problems and "empty.txt" in problems and "missing.txt" in problems
    assert "binary.bin" in problems

    with pytest.raises(IngestError, match="does not exist"):
        rag.ingest([tmp_path / "nope"])
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    assert RAG(tmp_path / "index2", settings, embedder=embedder).ingest([empty]).nothing_ingested


def test_second_writer_is_refused(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([corpus])
    store = IndexStore.open(tmp_path / "index")
    with store.writer(), pytest.raises(IndexLockedError, match="another process"):
        rag.ingest([corpus])
    assert rag.ingest([corpus]).files_unchanged == 3  # the lock was released


def test_index_built_with_another_model_is_refused(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([corpus])
    path = tmp_path / "index" / "manifest.json"
    data = json.loads(path.read_text())
    data["embedding_model"] = "some-other-model"
    path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match="some-other-model"):
        RAG.open(tmp_path / "index", settings, embedder=embedder)


def test_readers_search_while_a_writer_ingests(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([corpus])
    more = tmp_path / "more"
    _write(
        more,
        {f"note{i}.txt": f"Note {i} is about bread, ovens and baking temperature {i}." for i in range(30)},
    )
    errors: list[BaseException] = []

    def read() -> None:
        reader = RAG.open(tmp_path / "index", settings, embedder=embedder)
        try:
            for _ in range(20):
                assert reader.search("bake bread", k=3)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    rag.ingest([more])
    thread.join()
    assert errors == []


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, os
    from pathlib import Path
    from rag_app.settings import Settings
    from rag_app.rag import RAG
    import indexes.pipeline as pipeline
    pipeline.BATCH_CHUNKS = 8
    real_commit = pipeline._commit
    calls = {"n": 0}
    def commit(*args, **kwargs):
        real_commit(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            print("COMMITTED", flush=True)
            import time; time.sleep(60)
    pipeline._commit = commit
    RAG(sys.argv[1], Settings(cache_dir=sys.argv[3])).ingest([sys.argv[2]])
    """
)


def test_kill_9_mid_ingest_keeps_the_previous_index(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    index = tmp_path / "index"
    rag = RAG(index, settings, embedder=embedder)
    rag.ingest([corpus])
    before_top = rag.search("how long should dough rise?", k=1)[0].chunk_id
    before_docs = {d.source: d.content_hash for d in rag.documents()}
    big = tmp_path / "big"
    _write(
        big,
        {f"part{i}.txt": f"Part {i}: granite, basalt and marble are rocks number {i}." for i in range(40)},
    )

    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(index), str(big), str(settings.cache_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "COMMITTED" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    assert "COMMITTED" in line, proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # the old documents are all still found; the lock died with the process
    reopened = RAG.open(index, settings, embedder=embedder)
    assert reopened.search("how long should dough rise?", k=1)[0].chunk_id == before_top
    after_docs = {d.source: d.content_hash for d in reopened.documents()}
    assert before_docs.items() <= after_docs.items()
    # committed batches are searchable even though the FAISS/BM25 files were never written
    assert any("granite" in h.text for h in reopened.search("granite basalt marble", k=3))
    finished = reopened.ingest([big])
    assert finished.files_unchanged >= 1 and finished.files_unchanged + finished.files_ingested == 40
    stats = reopened.stats()
    assert stats["vectors"] == stats["chunks"]


def test_delete_documents(corpus: Path, tmp_path: Path, settings, embedder) -> None:
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([corpus])
    source = str((corpus / "cooking.txt").resolve())
    assert rag.delete([source]) >= 1
    assert all(h.source != source for h in rag.search("bread dough", k=5))
    with pytest.raises(QueryError, match="not in the index"):
        rag.delete([source])
