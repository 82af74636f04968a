"""Uploads the ingest refuses do not stay in ``server.uploads_dir``; a file they replaced comes back.

The app is the real one (:func:`create_app`) over a real index (FAISS + SQLite) and the packaged
embedder, driven in process by Starlette's test client; only the generator is a double, and ingest
never calls it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient
from test_hardening_ingest import _held_lock, _UnusedGenerator

from rag_app.rag import RAG
from rag_app.server.app import create_app
from rag_app.settings import ServerSettings

GOOD = b"# Ferries\n\nThe ferry to the island leaves the north pier at nine.\n"
BROKEN_PDF = b"%PDF-1.7\nthis is no PDF at all, only its first five bytes\n"
"""Passes the server's content check (it starts like a PDF) and fails to load in the ingest."""


@contextmanager
def _client(tmp_path: Path, settings: Any, embedder: Any, **index: Any) -> Iterator[TestClient]:
    s = settings.model_copy(deep=True)
    s.data_dir = tmp_path / "data"
    s.index = s.index.model_copy(update=index)
    s.server = ServerSettings(indexes_dir=tmp_path / "indexes", require_api_key=False, ingest_wait_s=0)
    with TestClient(create_app(s, embedder=embedder, generator=_UnusedGenerator())) as client:
        yield client


def _upload(client: TestClient, *files: tuple[str, bytes]) -> Any:
    return client.post("/ingest", data={"index": "main"}, files=[("files", f) for f in files])


def _folder(tmp_path: Path) -> dict[str, bytes]:
    """What the uploads folder of index ``main`` holds, hidden files included."""
    folder = tmp_path / "data" / "uploads" / "main"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_upload_the_ingest_fails_is_not_kept(tmp_path: Path, settings: Any, embedder: Any) -> None:
    with _client(tmp_path, settings, embedder) as client:
        answer = _upload(client, ("ferries.md", GOOD), ("broken.pdf", BROKEN_PDF))
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["files_ingested"] == 1 and report["files"] == ["ferries.md", "broken.pdf"]
        assert [f["path"] for f in report["files_failed"]] == ["broken.pdf"]  # the name sent, no server path
        assert str(tmp_path) not in answer.text
    assert _folder(tmp_path) == {"ferries.md": GOOD}


def test_a_refused_replacement_brings_the_earlier_upload_back(
    tmp_path: Path, settings: Any, embedder: Any
) -> None:
    larger = GOOD + b"The return ferry leaves the island at five.\n" * 40  # over max_file_mb: skipped
    with _client(tmp_path, settings, embedder, max_file_mb=0.001) as client:
        assert _upload(client, ("ferries.md", GOOD)).json()["files_ingested"] == 1
        answer = _upload(client, ("ferries.md", larger))
        assert answer.status_code == 200, answer.text
        assert answer.json()["files_ingested"] == 0 and len(answer.json()["files_skipped"]) == 1
        assert answer.json()["files_skipped"][0]["path"] == "ferries.md" and str(tmp_path) not in answer.text
    assert _folder(tmp_path) == {"ferries.md": GOOD}


def test_uploads_are_undone_when_the_ingest_fails(tmp_path: Path, settings: Any, embedder: Any) -> None:
    with _client(tmp_path, settings, embedder) as client:
        assert _upload(client, ("ferries.md", GOOD)).json()["files_ingested"] == 1
        index = tmp_path / "indexes" / "main"
        with _held_lock(index):  # another writer: with ingest_wait_s = 0 the request gets 409 at once
            locked = _upload(client, ("ferries.md", b"# Ferries\n\nNo ferries run.\n"), ("bus.md", GOOD))
        assert locked.status_code == 409 and locked.json()["error"]["type"] == "index_locked"
        assert str(tmp_path) not in locked.text
    assert _folder(tmp_path) == {"ferries.md": GOOD}
    rag = RAG(index, settings, embedder=embedder)
    assert [Path(d.source).name for d in rag.documents()] == ["ferries.md"]
    rag.close()
