"""File discovery on folders built in tmp_path: the edge cases an ingest meets in the wild."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from indexes.discovery import Discovery, Skipped, content_hash, discover

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"
MB = 1 << 20


def run(*paths: str | Path, max_bytes: int = 10 * MB) -> Discovery:
    return discover(list(paths), max_bytes=max_bytes)


def reasons(found: Discovery) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in found.skipped}


def test_missing_path_goes_to_missing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    found = run(tmp_path / "nope", tmp_path / "a.txt")
    assert found.missing == [str(tmp_path / "nope")]
    assert found.files == [(tmp_path / "a.txt").resolve()]
    assert found.skipped == []


def test_empty_folder(tmp_path: Path) -> None:
    assert run(tmp_path) == Discovery([], [], [])


def test_walk_is_sorted_recursive_and_skips_hidden_folders(tmp_path: Path) -> None:
    for rel in (
        "b.md",
        "a.txt",
        "sub/c.html",
        "sub/deeper/d.pdf",
        ".git/x.txt",
        "node_modules/y.md",
        "__pycache__/z.txt",
        ".hidden.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = run(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == [
        "a.txt",
        "b.md",
        "sub/c.html",
        "sub/deeper/d.pdf",
    ]
    assert found.skipped == []
    assert all(p.is_absolute() for p in found.files)
    # a hidden folder named explicitly is walked
    assert [p.name for p in run(tmp_path / ".git").files] == ["x.txt"]


def test_skip_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    (tmp_path / "Makefile").write_text("all:")
    (tmp_path / "big.md").write_bytes(b"x" * (MB + 1))
    (tmp_path / "ok.MD").write_text("# fine")
    found = run(tmp_path, max_bytes=MB)
    assert reasons(found) == {
        "empty.txt": "empty file (0 bytes)",
        "blob.bin": "unsupported file type .bin",
        "Makefile": "unsupported file type (no extension)",
        "big.md": "larger than 1 MB (limit index.max_file_mb)",
    }
    assert [p.name for p in found.files] == ["ok.MD"]
    assert all(isinstance(s, Skipped) for s in found.skipped)


def test_symlink_loop_is_reported_once_and_terminates(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub", root / "sub" / "self")
    found = run(root)
    assert [p.name for p in found.files] == ["a.txt"]
    assert sorted((Path(s.path).name, s.reason) for s in found.skipped) == [
        ("loop", "symlink loop"),
        ("self", "symlink loop"),
    ]


def test_self_referencing_link_and_broken_link(tmp_path: Path) -> None:
    os.symlink(tmp_path / "me.txt", tmp_path / "me.txt")
    os.symlink(tmp_path / "gone.txt", tmp_path / "dangling.txt")
    found = run(tmp_path)
    assert reasons(found) == {"me.txt": "symlink loop", "dangling.txt": "broken symlink"}
    assert run(tmp_path / "dangling.txt").skipped == [
        Skipped(str(tmp_path / "dangling.txt"), "broken symlink")
    ]


def test_symlinks_are_followed_and_files_deduplicated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    os.symlink(data, corpus / "linked")
    os.symlink(data / "a.txt", corpus / "alias.txt")
    found = run(corpus, data, data / "a.txt")
    assert found.files == [(data / "a.txt").resolve()]
    assert found.skipped == []


def test_relative_paths_come_back_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("a")
    monkeypatch.chdir(tmp_path)
    assert run("a.txt", ".").files == [(tmp_path / "a.txt").resolve()]


def test_custom_extensions(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.log").write_text("b")
    found = discover([tmp_path], max_bytes=MB, extensions=frozenset({".log"}))
    assert [p.name for p in found.files] == ["b.log"]
    assert reasons(found) == {"a.txt": "unsupported file type .txt"}


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(tmp_path / "pipe.txt")
    assert reasons(run(tmp_path)) == {"pipe.txt": "not a regular file"}


def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    """chmod 000 stops everyone but root; as root, the walk runs in a child that drops to ``nobody``."""
    folder = Path(tempfile.mkdtemp(prefix="rag-app-perm-")) if os.geteuid() == 0 else tmp_path
    try:
        folder.chmod(0o755)
        (folder / "ok.txt").write_text("ok")
        (folder / "secret.txt").write_text("s")
        (folder / "locked").mkdir()
        (folder / "locked" / "x.txt").write_text("x")
        os.chmod(folder / "secret.txt", 0)
        os.chmod(folder / "locked", 0)
        found = _discover_as_nobody(folder) if os.geteuid() == 0 else reasons(run(folder))
    finally:
        os.chmod(folder / "locked", 0o755)
        if folder != tmp_path:
            shutil.rmtree(folder)
    assert found == {
        "secret.txt": "not readable (permission denied)",
        "locked": "not readable (permission denied)",
    }


def _discover_as_nobody(folder: Path) -> dict[str, str]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, walk, report through the pipe, exit without pytest's cleanup
        status = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(reasons(run(folder))).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        pytest.skip("could not switch to user nobody to test permissions as root")
    result: dict[str, str] = json.loads(data)
    return result


def test_content_hash_streams_whole_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 17)
    (tmp_path / "f.bin").write_bytes(data)
    assert content_hash(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "g.bin").write_bytes(data[:-1] + b"!")
    assert content_hash(tmp_path / "g.bin") != content_hash(tmp_path / "f.bin")


def test_discover_sample_folder() -> None:
    if not FORMATS.is_dir():
        pytest.skip(f"sample documents not available: {FORMATS} is absent (see ../shared/data/README.md)")
    found = run(FORMATS, max_bytes=50 * MB)
    assert len(found.files) == len({p.name for p in FORMATS.iterdir()})
    assert found.skipped == [] and found.missing == []
    assert found.files == sorted(found.files)
