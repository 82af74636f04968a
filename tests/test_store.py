"""Index store internals on real SQLite and real FAISS, without the embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_app.errors import IndexMismatchError, IndexNotFoundError
from rag_app.store import vectors as vec
from rag_app.store.docstore import Docstore
from rag_app.store.fsutil import atomic_path, atomic_write_text
from rag_app.store.manifest import Manifest
from rag_app.store.sparse import SparseIndex


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    Docstore(path).close()
    store = Docstore(path)
    names = [r[0] for r in store.conn.execute("SELECT name FROM _migrations")]
    assert names == ["001_initial"]
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_transaction_rolls_back(tmp_path: Path) -> None:
    store = Docstore(tmp_path / "d.sqlite")
    with pytest.raises(ValueError), store.transaction():
        store.set_meta("generation", "5")
        raise ValueError
    assert store.generation == 0


def test_manifest_roundtrip_and_checks(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag-app ingest"):
        Manifest.load(tmp_path)
    m = Manifest(embedding_model="m", embedding_model_id="m@onnx-int8", dimension=8)
    m.save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == m
    loaded.check_compatible("m", 8)
    with pytest.raises(IndexMismatchError, match="re-ingest"):
        loaded.check_compatible("other", 8)
    with pytest.raises(IndexMismatchError):
        loaded.check_compatible("m", 16)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexNotFoundError, match="not a valid manifest"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize(
    ("n", "kind"), [(10, "flat"), (49_999, "flat"), (50_000, "hnsw"), (2_000_000, "ivf")]
)
def test_index_type_by_size(n: int, kind: str) -> None:
    assert vec.choose_spec(n).type == kind


def test_every_index_type_finds_the_nearest_vector(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2000, 32)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    ids = np.arange(100, 2100, dtype=np.int64)
    for requested in ("flat", "hnsw", "ivf"):
        spec = vec.choose_spec(len(data), requested)
        index = vec.build_index(spec, 32, [(ids[:1000], data[:1000]), (ids[1000:], data[1000:])])
        path = tmp_path / f"{requested}.faiss"
        vec.save_index(index, path)
        loaded = vec.load_index(path)
        hits = vec.search(loaded, data[123], 5)
        assert hits[0][0] == 223, requested
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        allowed = np.array([500, 900], dtype=np.int64)
        assert {i for i, _ in vec.search(loaded, data[123], 5, allowed)} <= {500, 900}


def test_gpu_always_without_gpu_is_a_clear_error() -> None:
    index = vec.new_index(vec.IndexSpec("flat"), 4)
    if vec.gpu_count():
        pytest.skip("a GPU is present")
    assert vec.to_gpu(index, "auto") is index
    with pytest.raises(RuntimeError, match=r"`gpu` extra"):
        vec.to_gpu(index, "always")


def test_sparse_index_roundtrip_and_mask(tmp_path: Path) -> None:
    rows = [(10, "The cat sat on the mat"), (11, "Dogs chase cats"), (12, "Quantum chromodynamics")]
    sparse = SparseIndex.build(rows)
    assert sparse.search("cats", 3)[0][0] in (10, 11)
    sparse.save(tmp_path / "bm25")
    loaded = SparseIndex.load(tmp_path / "bm25")
    assert [i for i, _ in loaded.search("quantum", 3)] == [12]
    assert loaded.search("cats", 3, allowed_ids=np.array([12])) == []
    assert loaded.search("the of and", 3) == []  # stop words only
    empty = SparseIndex.build([])
    empty.save(tmp_path / "empty")
    assert SparseIndex.load(tmp_path / "empty").search("cats", 3) == []
