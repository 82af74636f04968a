"""GGUF files split across wheels: found without importing them, joined once, verified part by part.

The parts here are small fake packages on ``sys.path`` (real files, real hashing and locking); the
pinned specs of the two real Qwen models are checked against their installed wheels when present.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path

import pytest

from rag_app.errors import ModelNotFoundError
from rag_app.packaged import QWEN_05B, QWEN_15B, PackagedFile, SplitGGUF, package_file


def _fake_split(root: Path, name: str, chunks: list[bytes]) -> SplitGGUF:
    """Install packages ``{name}1`` .. ``{name}N`` under ``root`` (put on sys.path by the caller)."""
    parts = []
    for i, data in enumerate(chunks, start=1):
        folder = root / f"{name}{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise RuntimeError('data-only package imported')\n")
        (folder / f"part{i:02d}.bin").write_bytes(data)
        parts.append(
            PackagedFile(
                package=f"{name}{i}",
                relative=f"data/part{i:02d}.bin",
                distribution=f"{name.replace('_', '-')}{i}",
                version="1.0",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    whole = b"".join(chunks)
    return SplitGGUF(
        file_name=f"{name}.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        parts=tuple(parts),
        license="Apache-2.0",
        requirements_file=f"requirements/{name}.txt",
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


CHUNKS = [b"GGUF" + bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 33, b"tail-bytes" * 7]


def test_join_once_and_verify(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_a", CHUNKS)
    cache = tmp_path / "cache"
    assert not split.is_joined(cache) and split.missing() == []
    joined = split.join(cache)
    assert joined.read_bytes() == b"".join(CHUNKS)
    assert split.is_joined(cache)
    assert "fakepart_a1" not in sys.modules  # located with find_spec, never imported
    record = json.loads(joined.with_name(joined.name + ".verified.json").read_text())
    assert record["sha256"] == split.sha256 and record["size"] == split.size
    mtime = joined.stat().st_mtime_ns
    assert split.join(cache) == joined and joined.stat().st_mtime_ns == mtime  # not joined again


def test_concurrent_joins_write_one_file(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_b", CHUNKS)
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(split.join(cache))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0].read_bytes() == b"".join(CHUNKS)
    assert not list(results[0].parent.glob(".*.part"))  # no temporary file left behind


def test_missing_part_names_the_package(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_c", CHUNKS)
    import shutil

    shutil.rmtree(site / "fakepart_c2")
    with pytest.raises(
        ModelNotFoundError, match=r"not installed: fakepart-c2\. Install them with: pip install"
    ):
        split.join(tmp_path / "cache")


def test_truncated_part_is_named_and_nothing_is_left(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_d", CHUNKS)
    part = site / "fakepart_d2" / "data" / "part02.bin"
    part.write_bytes(part.read_bytes()[:-10])
    cache = tmp_path / "cache"
    with pytest.raises(
        ModelNotFoundError, match=r"part02\.bin is 8,438 bytes, expected 8,448: the wheel fakepart-d2==1\.0"
    ):
        split.join(cache)
    assert not split.joined_path(cache).exists()
    assert not list(split.joined_path(cache).parent.glob(".*"))


def test_corrupted_part_is_named(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_e", CHUNKS)
    part = site / "fakepart_e3" / "data" / "part03.bin"
    data = bytearray(part.read_bytes())
    data[0] ^= 0xFF  # same size, different bytes
    part.write_bytes(bytes(data))
    with pytest.raises(
        ModelNotFoundError, match=r"part03\.bin has sha256 [0-9a-f]{64}, expected .*corrupted"
    ):
        split.join(tmp_path / "cache")


def test_whole_file_hash_mismatch_names_the_expected_hash(site: Path, tmp_path: Path) -> None:
    good = _fake_split(site, "fakepart_f", CHUNKS)
    wrong = SplitGGUF(good.file_name, good.size, "0" * 64, good.parts, good.license, good.requirements_file)
    with pytest.raises(ModelNotFoundError, match=f"has sha256 {good.sha256}, expected {'0' * 64}"):
        wrong.join(tmp_path / "cache")
    assert not wrong.joined_path(tmp_path / "cache").exists()


def test_a_joined_file_changed_later_is_joined_again(site: Path, tmp_path: Path) -> None:
    split = _fake_split(site, "fakepart_g", CHUNKS)
    cache = tmp_path / "cache"
    joined = split.join(cache)
    joined.write_bytes(b"tampered")
    assert not split.is_joined(cache)
    assert split.join(cache).read_bytes() == b"".join(CHUNKS)


def test_too_little_disk_is_refused_before_writing(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    split = _fake_split(site, "fakepart_h", CHUNKS)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ModelNotFoundError, match=r"needs 0\.3 GB free in .* which has 0\.0 GB"):
        split.join(tmp_path / "cache")


@pytest.mark.parametrize("split", [QWEN_05B, QWEN_15B], ids=["0.5B", "1.5B"])
def test_pinned_qwen_parts_add_up_to_the_official_file(split: SplitGGUF) -> None:
    assert sum(p.size or 0 for p in split.parts) == split.size
    assert len({p.sha256 for p in split.parts}) == len(split.parts)
    requirements = Path(__file__).resolve().parents[1] / split.requirements_file
    pinned = [line.split()[0] for line in requirements.read_text().splitlines() if line and line[0] != "#"]
    assert pinned == [p.requirement for p in split.parts]
    installed = [p for p in split.parts if p.locate() is not None]
    if not installed:
        pytest.skip(f"{split.file_name}: its wheels are not installed")
    for part in installed:  # the installed wheels carry exactly the pinned bytes
        path = part.locate()
        assert path is not None and path.stat().st_size == part.size


def test_package_file_of_an_absent_package() -> None:
    assert package_file("no_such_package_here_xyz", "data/part01.bin") is None
