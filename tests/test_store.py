"""Index store internals on real SQLite and real FAISS, without the embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rag_app.errors import IndexMismatchError, IndexNotFoundError
from rag_app.settings import IndexSettings
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
    ("n", "kind"), [(10, "flat"), (49_999, "flat"), (50_000, "hnsw"), (2_000_000, "ivfpq")]
)
def test_index_type_by_size(n: int, kind: str) -> None:
    assert vec.choose_spec(n).type == kind


def _unit_vectors(n: int, dim: int = 32) -> np.ndarray:
    data = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def test_every_index_type_finds_the_nearest_vector(tmp_path: Path) -> None:
    data = _unit_vectors(2000)
    ids = np.arange(100, 2100, dtype=np.int64)
    for requested in ("flat", "hnsw", "ivf"):
        spec = vec.choose_spec(len(data), requested)
        index = vec.build_index(spec, 32, [(ids[:1000], data[:1000]), (ids[1000:], data[1000:])])
        path = tmp_path / f"{requested}.faiss"
        index.save(path)
        loaded = vec.load_index(requested, path)
        hits = loaded.search(data[123], 5)
        assert hits[0][0] == 223, requested
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        allowed = np.array([500, 900], dtype=np.int64)
        assert {i for i, _ in loaded.search(data[123], 5, allowed)} <= {500, 900}


@pytest.mark.parametrize("kind", sorted(vec.VECTOR_INDEXES))
def test_vector_index_contract(kind: str, tmp_path: Path) -> None:
    """Every backend of the mapping: new, add, search (with an id filter), remove, save, load.

    Compressed kinds get the full vectors to re-score against (``refine``), as the store gives them.
    """
    cls = vec.VECTOR_INDEXES[kind]
    data = _unit_vectors(600)
    ids = np.arange(1000, 1600, dtype=np.int64)
    spec = vec.IndexSpec(kind, cls.default_params(len(data)))
    full = dict(zip(range(1000, 1600), data, strict=True)) | {7: data[42]}

    def stored(wanted: np.ndarray) -> np.ndarray:
        return np.stack([full.get(int(i), np.zeros(32, np.float32)) for i in wanted])

    index = cls.new(spec, 32, training=data)
    vec.attach(index, spec.params, stored)
    assert isinstance(index, vec.VectorIndex) and index.kind == kind
    assert index.ntotal == 0 and index.search(data[0], 5) == []
    index.add(ids, data)
    assert index.ntotal == 600
    hits = index.search(data[42], 3)
    assert hits[0][0] == 1042 and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert index.search(data[42], 0) == [] and index.search(data[42], 5, np.array([], dtype=np.int64)) == []
    assert {i for i, _ in index.search(data[42], 5, np.array([1007, 1300]))} <= {1007, 1300}
    assert len(index.search(data[42], 10_000)) <= 600

    index.save(tmp_path / "v.faiss")
    loaded = cls.load(tmp_path / "v.faiss")
    vec.attach(loaded, spec.params, stored)
    assert loaded.ntotal == 600 and loaded.search(data[42], 1)[0][0] == 1042
    assert loaded.to_device("never") is loaded

    if cls.updatable:
        loaded.remove(np.array([1042], dtype=np.int64))
        assert loaded.ntotal == 599 and loaded.search(data[42], 1)[0][0] != 1042
        loaded.add(np.array([7], dtype=np.int64), data[42:43])
        assert loaded.search(data[42], 1)[0][0] == 7


def test_unknown_index_type_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: auto, flat, hnsw, ivf"):
        vec.choose_spec(10, "annoy")
    with pytest.raises(ValidationError, match="auto or one of flat, hnsw, ivf"):  # index.index_type
        IndexSettings(index_type="annoy")
    assert IndexSettings(index_type="hnsw").index_type == "hnsw"


def test_gpu_always_without_gpu_is_a_clear_error() -> None:
    index = vec.new_index(vec.IndexSpec("flat"), 4)
    if vec.gpu_count():
        pytest.skip("a GPU is present")
    assert index.to_device("auto") is index
    with pytest.raises(RuntimeError, match=r"`gpu` extra"):
        index.to_device("always")


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
