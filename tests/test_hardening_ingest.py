"""Hostile inputs on the ingest side (issue 14): odd file names, zip bombs, binary junk, stale
counts, a second writer. Real files, the packaged embedder, real FAISS and SQLite; no network."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data

from indexes.discovery import source_name
from indexes.encoding import decode
from indexes.loaders import LoadLimits, load_document
from rag_app.errors import DocumentError, IndexLockedError
from rag_app.rag import RAG
from rag_app.store.index import IndexStore, IndexWriter

LATIN1_NAME = os.fsdecode(b"caf\xe9-notes.txt")
"""A file name that is not valid UTF-8 (a Latin-1 byte), as Python sees it: with a surrogate escape."""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _non_utf8_folder(tmp_path: Path) -> Path:
    docs = _write(
        tmp_path / "docs",
        {
            "granite.txt": "Granite is an igneous rock rich in quartz and feldspar.",
            "tides.md": "# Tides\n\nThe moon's gravity pulls the oceans and causes the tides.\n",
        },
    )
    try:
        (docs / LATIN1_NAME).write_text("The espresso machine descales itself every Friday night.\n")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    return docs


class _UnusedGenerator:
    """The server needs a generator; ingest never calls it (this double fails loudly if it does)."""

    model_id: str = "unused"
    adapter_id: str | None = None

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ingest must not generate")

    stream = generate

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _server(settings: Any, embedder: Any, tmp_path: Path, **server: Any) -> Any:
    """The REST app over ``tmp_path/indexes``, ingest by path from ``tmp_path/roots``, no keys."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rag_app.server.app import create_app
    from rag_app.settings import ServerSettings

    s = settings.model_copy(deep=True)
    s.data_dir = tmp_path / "data"
    s.server = ServerSettings(
        indexes_dir=tmp_path / "indexes", ingest_roots=[tmp_path / "roots"], require_api_key=False, **server
    )
    return TestClient(create_app(s, embedder=embedder, generator=_UnusedGenerator()))


# -- 1. a file name that is not valid UTF-8 --------------------------------------------------------
def test_source_name_escapes_only_what_is_not_utf8() -> None:
    assert source_name("/docs/café.txt") == "/docs/café.txt"
    assert source_name(Path("/docs") / LATIN1_NAME) == "/docs/caf\\xe9-notes.txt"
    assert source_name("lone \ud800 surrogate") == "lone \\xed\\xa0\\x80 surrogate"


def test_non_utf8_file_name_is_ingested_and_the_batch_goes_on(tmp_path: Path, settings, embedder) -> None:
    docs = _non_utf8_folder(tmp_path)
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    report = rag.ingest([docs])
    assert report.files_ingested == 3 and report.files_failed == []
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # printable, storable

    hit = rag.search("when does the espresso machine descale?", k=1)[0]
    assert hit.source == source_name((docs / LATIN1_NAME).resolve()) and hit.source.endswith(
        "caf\\xe9-notes.txt"
    )
    # later ingests of the folder work, and find the file unchanged (same key) rather than gone
    again = rag.ingest([docs], prune=True)
    assert again.files_unchanged == 3 and again.files_removed == 0 and again.files_ingested == 0
    (docs / LATIN1_NAME).write_text("The espresso machine now descales on Mondays.\n")
    changed = rag.ingest([docs], prune=True)
    assert changed.files_ingested == 1 and changed.files_removed == 0
    assert rag.stats()["documents"] == 3
    (docs / LATIN1_NAME).unlink()
    assert rag.ingest([docs], prune=True).files_removed == 1


def test_non_utf8_file_name_over_rest_ingest_by_path(tmp_path: Path, settings, embedder) -> None:
    docs = _non_utf8_folder(tmp_path / "roots")
    with _server(settings, embedder, tmp_path) as client:
        reply = client.post("/ingest", json={"index": "odd", "paths": [str(docs)]})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["files_ingested"] == 3 and body["files_failed"] == []
        again = client.post("/ingest", json={"index": "odd", "paths": [str(docs)], "prune": True})
        assert again.status_code == 200 and again.json()["files_unchanged"] == 3
        listed = client.get("/indexes/odd/documents").json()["documents"]
        assert any(d["source"].endswith("caf\\xe9-notes.txt") for d in listed)


# -- 2. zip bombs and bounded memory -----------------------------------------------------------------
_ZIP_MEMBERS = {
    ".docx": "word/document.xml",
    ".pptx": "ppt/slides/slide1.xml",
    ".xlsx": "xl/worksheets/sheet1.xml",
    ".odt": "content.xml",
    ".epub": "OEBPS/chapter1.xhtml",
}


def _zip_bomb(path: Path, member: str, unpacked_mb: int) -> Path:
    """A small zip whose one big member inflates to ``unpacked_mb`` megabytes of one repeated byte."""
    block = b"<" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(member, "w", force_zip64=True) as out:
            for _ in range(unpacked_mb):
                out.write(block)
    return path


@pytest.mark.parametrize("suffix", sorted(_ZIP_MEMBERS))
def test_zip_bomb_is_refused_from_the_directory_before_any_member_is_read(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zip_bomb(tmp_path / f"bomb{suffix}", _ZIP_MEMBERS[suffix], 40)  # ~40 MB from ~200 KB
    assert bomb.stat().st_size < 1 << 20

    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError, match=r"zip bomb.*limit index\.max_zip_ratio") as caught:
            load_document(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.path == str(bomb)
    assert opened == [] and peak < 8 << 20  # refused from the central directory alone

    # the total unpacked size is its own limit (here below the ratio's reach)
    with pytest.raises(
        DocumentError, match=r"unpack to 40 MB, more than 8 MB \(limit index\.max_unpacked_mb\)"
    ):
        load_document(bomb, limits=LoadLimits(max_unpacked_mb=8, max_zip_ratio=10_000))
    assert opened == []


def test_zip_limits_are_settings_and_ingest_goes_on(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "docs", {"fine.txt": "Basalt forms when lava cools quickly at the surface."})
    _zip_bomb(docs / "bomb.docx", "word/document.xml", 20)
    report = RAG(tmp_path / "index", settings, embedder=embedder).ingest([docs])
    assert report.files_ingested == 1
    assert "zip bomb" in report.files_failed[0]["error"] and report.files_failed[0]["path"].endswith(
        "bomb.docx"
    )

    loose = settings.model_copy(deep=True)
    loose.index.max_zip_ratio = 1e9
    limits = LoadLimits.from_settings(loose)
    assert limits.max_zip_ratio == 1e9 and limits.max_unpacked_mb == settings.index.max_unpacked_mb
    with pytest.raises(DocumentError) as caught:  # past the guard it is only a broken DOCX
        load_document(docs / "bomb.docx", limits=limits)
    assert "zip bomb" not in caught.value.reason


@pytest.mark.parametrize(
    "name", ["fake.docx", "sample-presentation.pptx", "stanley-cups.xlsx", "simple.odt", "winter-sports.epub"]
)
def test_real_zip_documents_pass_the_guard(name: str) -> None:
    assert load_document(shared_data("formats", name)).text.strip()


def test_every_loader_is_bounded_by_file_and_text_limits(tmp_path: Path) -> None:
    text = tmp_path / "long.txt"
    text.write_text("The archive keeps every letter the mayor wrote.\n\n" * 2000)  # ~100 KB
    with pytest.raises(DocumentError, match=r"larger than 0.05 MB \(limit index.max_file_mb\)"):
        load_document(text, limits=LoadLimits(max_file_mb=0.05))
    with pytest.raises(DocumentError, match=r"larger than 0.05 MB \(limit index.max_text_mb\)"):
        load_document(text, limits=LoadLimits(max_text_mb=0.05))  # refused before it is read
    pdf = shared_data("formats", "layout-parser-paper-fast.pdf")
    with pytest.raises(
        DocumentError, match=r"its text is larger than 0.001 MB \(by page 1; limit index.max_text_mb"
    ):
        load_document(pdf, limits=LoadLimits(max_text_mb=0.001))  # a PDF stops at the page that passes it
    assert load_document(pdf).text
    docx = shared_data("formats", "handbook-1p.docx")  # bounded by its zip directory, checked once loaded
    with pytest.raises(DocumentError, match=r"its text is larger than 0.0001 MB .*limit index.max_text_mb"):
        load_document(docx, limits=LoadLimits(max_text_mb=0.0001))


# -- 3. binary junk named as text ------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".csv", ".json"])
def test_random_bytes_are_refused_as_binary(tmp_path: Path, suffix: str) -> None:
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(DocumentError, match="looks like binary data") as caught:
        load_document(junk)
    assert caught.value.path == str(junk) and "printable characters" in caught.value.reason


def test_compressed_and_executable_bytes_are_refused(tmp_path: Path) -> None:
    import gzip

    (tmp_path / "archive.txt").write_bytes(gzip.compress(Path(__file__).read_bytes()))
    (tmp_path / "program.txt").write_bytes(Path(sys.executable).resolve().read_bytes()[:65536])
    for name in ("archive.txt", "program.txt"):
        with pytest.raises(DocumentError, match="looks like binary data"):
            load_document(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("fake-html-cp1252.html", "cp1252"),
        ("example-steelJIS-datasheet-utf-16.html", "utf-16"),
        ("umlauts-non-utf8.md", "cp1252"),
        ("norwich-city.txt", "utf-8"),
        ("codeblock.md", "utf-8"),
        ("fake-doc.rtf", ""),
        ("fake-email.eml", ""),
    ],
)
def test_real_text_in_any_encoding_still_passes(name: str, encoding: str) -> None:
    doc = load_document(shared_data("formats", name))
    assert doc.text.strip()
    assert str(doc.metadata.get("encoding", "")).startswith(encoding)


def test_text_encodings_without_bom_still_pass(tmp_path: Path) -> None:
    sample = "Die schöne Grüße für Jürgen kosten 15,50 €.\n\nZweiter Absatz über Köln und Malmö.\n" * 20
    cases = {
        "le.txt": sample.encode("utf-16-le"),
        "be.txt": sample.encode("utf-16-be"),
        "cp1252.txt": sample.encode("cp1252"),
        "latin1.md": sample.replace("€", "EUR").encode("latin-1"),
        "utf8.csv": "name,city\nAnna,Köln\nBo,Malmö\n".encode(),
        "koi8.txt": ("Привет, мир. Это обычный русский текст без метки порядка байтов.\n" * 10).encode(
            "koi8-r"
        ),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        doc = load_document(tmp_path / name)
        assert doc.text.strip() and "\ufffd" not in doc.text, name
    assert decode(sample.encode("utf-16-le")).encoding == "utf-16-le"


def test_ingest_reports_binary_junk_and_goes_on(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "docs", {"fine.txt": "Obsidian is volcanic glass with sharp edges."})
    (docs / "noise.txt").write_bytes(os.urandom(256 * 1024))
    started = time.perf_counter()
    report = RAG(tmp_path / "index", settings, embedder=embedder).ingest([docs])
    assert report.files_ingested == 1 and report.chunks_added == 1
    assert [Path(f["path"]).name for f in report.files_failed] == ["noise.txt"]
    assert "looks like binary data" in report.files_failed[0]["error"]
    assert time.perf_counter() - started < 60


# -- 7. counts from what the index serves ----------------------------------------------------------
def test_stats_count_what_searches_use_after_a_crash_before_the_faiss_write(
    tmp_path: Path, settings, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _write(tmp_path / "a", {"granite.txt": "Granite is an igneous rock rich in quartz and feldspar."})
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([first])
    more = _write(
        tmp_path / "b", {f"note{i}.txt": f"Note {i} says the ferry leaves at {i} o'clock." for i in range(5)}
    )
    with monkeypatch.context() as patch:  # the process dies after the SQLite commit, before FAISS
        patch.setattr(IndexWriter, "finish", lambda self: None)
        RAG(tmp_path / "index", settings, embedder=embedder).ingest([more])

    stats = IndexStore.open(tmp_path / "index").stats()
    assert stats["documents"] == 6 and stats["chunks"] == 6
    assert stats["vectors"] == 6  # the manifest still says 1
    assert stats["derived_files_current"] is False

    from click.testing import CliRunner

    from rag_app.cli import cli

    result = CliRunner().invoke(cli, ["index", "stats", str(tmp_path / "index"), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["chunks"] == shown["vectors"] == 6


def test_stats_of_an_open_index_follow_a_delete_by_another_writer(tmp_path: Path, settings, embedder) -> None:
    docs = _write(
        tmp_path / "docs", {f"n{i}.txt": f"Locker {i} holds the spare key number {i}." for i in range(4)}
    )
    served = RAG(tmp_path / "index", settings, embedder=embedder)  # like the server's long-lived RAG
    served.ingest([docs])
    assert served.stats()["vectors"] == 4

    other = RAG(tmp_path / "index", settings, embedder=embedder)
    other.delete([str((docs / "n0.txt").resolve())])
    stats = served.stats()
    assert stats["documents"] == 3 and stats["chunks"] == stats["vectors"] == 3
    assert stats["derived_files_current"] is True


# -- 11. a second writer waits -------------------------------------------------------------------------
@contextmanager
def _held_lock(index: Path) -> Iterator[threading.Event]:
    """Another writer holds the index's lock (in a thread, like another process) until the event is set."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with IndexStore.open(index).writer():
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join()


def _release_later(release: threading.Event, seconds: float) -> None:
    threading.Timer(seconds, release.set).start()


def test_second_writer_waits_with_wait_and_fails_after_it(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "docs", {"a.txt": "The red tram runs every ten minutes."})
    rag = RAG(tmp_path / "index", settings, embedder=embedder)
    rag.ingest([docs])
    (docs / "b.txt").write_text("The night bus stops at the old harbour.")

    with _held_lock(tmp_path / "index") as release:
        with pytest.raises(IndexLockedError, match=r"waited 0.2 s.*--wait"):
            rag.ingest([docs], wait=0.2)
        started = time.monotonic()
        _release_later(release, 1.0)
        report = rag.ingest([docs], wait=30)
        assert report.files_ingested == 1 and time.monotonic() - started > 0.8

    waiting = settings.model_copy(deep=True)
    waiting.index.lock_wait_s = 30
    with _held_lock(tmp_path / "index") as release:
        with pytest.raises(IndexLockedError):  # the default still fails at once
            rag.delete([str((docs / "a.txt").resolve())])
        _release_later(release, 0.5)
        assert RAG(tmp_path / "index", waiting, embedder=embedder).ingest([docs]).files_unchanged == 2


def test_cli_ingest_wait(tmp_path: Path, settings, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from rag_app.cli import cli

    monkeypatch.setenv("RAG_APP_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.delenv("RAG_APP_CONFIG", raising=False)
    docs = _write(tmp_path / "docs", {"a.txt": "The lighthouse keeper logs every passing ship."})
    RAG(tmp_path / "index", settings, embedder=embedder).ingest([docs])
    (docs / "b.txt").write_text("The harbour master keeps the tide tables.")
    args = ["ingest", str(docs), "--index", str(tmp_path / "index"), "--json"]
    with _held_lock(tmp_path / "index") as release:
        refused = CliRunner().invoke(cli, [*args, "--wait", "0.1"])
        assert refused.exit_code == 1 and "waited 0.1 s" in refused.output
        _release_later(release, 1.0)
        waited = CliRunner().invoke(cli, [*args, "--wait", "60"])
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["files_ingested"] == 1


def test_rest_ingest_queues_behind_another_writer(tmp_path: Path, settings, embedder) -> None:
    docs = _write(tmp_path / "roots" / "docs", {"a.txt": "The ferry to the island leaves at nine."})
    index = tmp_path / "indexes" / "main"
    RAG(index, settings, embedder=embedder).ingest([docs])
    (docs / "b.txt").write_text("The return ferry leaves the island at five.")

    body = {"index": "main", "paths": [str(docs)]}
    with _server(settings, embedder, tmp_path, ingest_wait_s=0.1) as client, _held_lock(index):
        busy = client.post("/ingest", json=body)
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["type"] == "index_locked"
    with _server(settings, embedder, tmp_path, ingest_wait_s=30) as client, _held_lock(index) as release:
        _release_later(release, 1.0)
        queued = client.post("/ingest", json=body)
        assert queued.status_code == 200, queued.text
        assert queued.json()["files_ingested"] == 1


# -- what held, kept as a test: clients search a live server while it ingests ------------------------
def test_clients_search_a_live_server_during_an_ingest(tmp_path: Path, settings, embedder) -> None:
    pytest.importorskip("fastapi")
    import socket

    import httpx
    import uvicorn

    from rag_app.server.app import create_app
    from rag_app.settings import ServerSettings

    docs = _write(tmp_path / "roots" / "docs", {"a.txt": "The ferry to the island leaves at nine."})
    RAG(tmp_path / "indexes" / "main", settings, embedder=embedder).ingest([docs])
    news = {
        f"n{i:02}.txt": f"Bulletin {i}: the harbour crane number {i} lifts containers." for i in range(40)
    }
    _write(docs, {**news, "kiosk.txt": "The quayside kiosk sells smoked mackerel rolls."})
    s = settings.model_copy(deep=True)
    s.data_dir = tmp_path / "data"
    s.server = ServerSettings(
        indexes_dir=tmp_path / "indexes",
        default_index="main",
        ingest_roots=[tmp_path / "roots"],
        require_api_key=False,
        rate_limit_per_minute=0,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(create_app(s, embedder=embedder, generator=_UnusedGenerator()), log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        done, statuses = threading.Event(), []

        def client() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not done.is_set():
                    statuses.append(
                        http.post("/search", json={"query": "ferry to the island", "k": 3}).status_code
                    )

        clients = [threading.Thread(target=client) for _ in range(6)]
        for c in clients:
            c.start()
        with httpx.Client(base_url=url, timeout=120) as http:
            report = http.post("/ingest", json={"paths": [str(docs)]})
            found = http.post("/search", json={"query": "smoked mackerel rolls at the quayside", "k": 1})
        done.set()
        for c in clients:
            c.join(30)
        assert report.status_code == 200 and report.json()["files_ingested"] == 41
        assert statuses and set(statuses) == {200}
        assert found.json()["hits"][0]["source"].endswith("kiosk.txt")  # searchable at once
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
