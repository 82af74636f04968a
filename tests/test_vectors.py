"""Compressed vector indexes (IVF-PQ, OPQ+IVF-PQ) through the real index store: FAISS and SQLite.

Tiny data (32 dims, a few hundred vectors, 16 lists) so that PQ trains in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_app.documents import Chunk
from rag_app.errors import ConfigError, IndexMismatchError
from rag_app.settings import IndexSettings
from rag_app.store import vectors as vec
from rag_app.store.index import IndexStore
from rag_app.store.manifest import Manifest

DIM = 32
PQ = IndexSettings(index_type="ivfpq", nlist=16, pq_m=8, retrain_factor=2.0)


def _unit(n: int, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def _doc(name: str, vectors: np.ndarray) -> dict[str, object]:
    chunks = [Chunk(f"{name} chunk {i}", 0, 1, None, (), i) for i in range(len(vectors))]
    return {
        "source": name,
        "content_hash": name,
        "format": "txt",
        "size": 1,
        "mtime": 0.0,
        "metadata": {},
        "chunks": chunks,
        "text_hashes": [f"{name}-{i}" for i in range(len(vectors))],
        "vectors": vectors,
    }


def _store(folder: Path) -> IndexStore:
    return IndexStore.create(
        folder,
        embedding_model="m",
        embedding_model_id="m@test",
        dimension=DIM,
        chunk_tokens=256,
        overlap_tokens=32,
        use_gpu="never",
    )


def _write(store: IndexStore, settings: IndexSettings | str, *docs: dict[str, object]) -> None:
    with store.writer(settings) as writer:
        writer.put(list(docs))


def _best(store: IndexStore, query: np.ndarray) -> tuple[int, float]:
    return store.retrieve(k=3, query_vector=query).dense[0]


def test_auto_picks_pq_past_a_million_and_settings_override_defaults() -> None:
    assert vec.choose_spec(vec.HNSW_MAX).type == "ivfpq"
    assert vec.choose_spec(vec.HNSW_MAX).params["nlist"] == 4096
    spec = vec.choose_spec(10_000, "opq-ivfpq", PQ.vector_params())
    assert spec.params["nlist"] == 16 and spec.params["pq_m"] == 8 and spec.params["refine"] == 8
    assert spec.params["nprobe"] == vec.PqIndex.default_params(10_000)["nprobe"]  # 0: the default
    assert vec.choose_spec(10_000, "flat", PQ.vector_params()).params == {}
    no_refine = IndexSettings(refine=0, retrain_factor=0).vector_params()
    assert vec.choose_spec(10_000, "ivfpq", no_refine).params["refine"] == 0


def test_pq_index_in_the_store_refines_adds_in_place_and_retrains_on_growth(tmp_path: Path) -> None:
    data = _unit(1000)
    store = _store(tmp_path / "index")
    _write(store, PQ, _doc("a", data[:300]))
    m = Manifest.load(store.folder)
    assert m.index_type == "ivfpq" and m.vectors == 300
    assert m.index_params["nlist"] == 16 and m.index_params["pq_m"] == 8
    assert m.index_params["trained_on"] == 300 and m.index_params["built_for"] == 300
    chunk_id, score = _best(store, data[10])
    assert store.hits([(chunk_id, score)])[0].text == "a chunk 10"
    assert score == pytest.approx(1.0, abs=1e-5)  # re-scored against the docstore's float vector

    _write(store, PQ, _doc("b", data[300:550]))  # 550 <= 2 x 300: encoded with the old quantizers
    m = Manifest.load(store.folder)
    assert m.vectors == 550 and m.index_params["built_for"] == 300
    assert store.hits([_best(store, data[400])])[0].text == "b chunk 100"

    _write(store, PQ, _doc("c", data[550:]))  # 1000 > 2 x 300: retrained on the docstore
    m = Manifest.load(store.folder)
    assert m.vectors == 1000 and m.index_params["built_for"] == 1000
    assert m.index_params["trained_on"] == 1000
    assert store.hits([_best(store, data[900])])[0].text == "c chunk 350"

    with store.writer(PQ) as writer:  # a removed document leaves the PQ index too
        writer.delete(["b"])
    assert store.vectors.ntotal == 750
    assert store.hits([_best(store, data[400])])[0].text != "b chunk 100"


def test_nprobe_is_applied_at_search_time(tmp_path: Path) -> None:
    store = _store(tmp_path / "index")
    _write(store, IndexSettings(index_type="opq-ivfpq", nlist=16, nprobe=4), _doc("a", _unit(300)))
    assert Manifest.load(store.folder).index_params["nprobe"] == 4
    faiss = pytest.importorskip("faiss")
    assert faiss.extract_index_ivf(store.vectors.index).nprobe == 4  # type: ignore[attr-defined]
    wider = IndexStore.open(store.folder, use_gpu="never", nprobe=16)  # index.nprobe, no rebuild
    assert faiss.extract_index_ivf(wider.vectors.index).nprobe == 16  # type: ignore[attr-defined]
    assert wider.retrieve(k=1, query_vector=_unit(300)[7]).dense[0][1] == pytest.approx(1.0, abs=1e-5)


def test_pq_with_too_few_vectors_names_the_numbers_and_keeps_the_previous_index(tmp_path: Path) -> None:
    data = _unit(300)
    store = _store(tmp_path / "index")
    _write(store, "flat", _doc("a", data[:100]))
    before = Manifest.load(store.folder)
    with pytest.raises(ConfigError, match=r"at least 256 vectors to train on .* has 150.*'flat'"):
        _write(store, IndexSettings(index_type="ivfpq", nlist=16), _doc("b", data[100:150]))
    after = Manifest.load(store.folder)
    assert after == before and (store.folder / before.vectors_file).is_file()
    reader = IndexStore.open(store.folder, use_gpu="never")
    assert reader.hits([_best(reader, data[5])])[0].text == "a chunk 5"  # the previous index serves
    assert reader.hits([_best(reader, data[120])])[0].text == "b chunk 20"  # kept docs, rebuilt flat
    _write(reader, "flat", _doc("c", data[150:160]))  # a kind that fits writes the files again
    assert Manifest.load(store.folder).vectors == 160


def test_pq_m_that_does_not_divide_the_dimension_is_a_clear_error() -> None:
    spec = vec.choose_spec(300, "ivfpq", {"nlist": 16, "pq_m": 5})
    with pytest.raises(ConfigError, match=r"pq_m = 5 does not divide the embedding dimension 32"):
        vec.new_index(spec, DIM, _unit(300))


def test_dimension_mismatch_is_a_clear_error_and_overwrites_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path / "index")
    _write(store, PQ, _doc("a", _unit(300)))
    derived = [store.folder / "manifest.json", *store.folder.glob("vectors.*.faiss")]
    files = {p.name: p.read_bytes() for p in derived}
    reader = IndexStore.open(store.folder, use_gpu="never")
    with pytest.raises(IndexMismatchError, match=r"\(32 dims\) but embedding.model is 'm' \(16 dims\)"):
        reader.manifest.check_compatible("m", 16)  # what opening with a 16-dim embedder checks
    with pytest.raises(
        IndexMismatchError, match="query vector has 16 dimensions but the vector index holds 32"
    ):
        reader.retrieve(k=3, query_vector=np.ones(16, dtype=np.float32))
    manifest = Manifest.load(store.folder)
    with pytest.raises(IndexMismatchError, match="holds 32-dimensional vectors but the manifest says 16"):
        vec.load_index("ivfpq", store.folder / manifest.vectors_file, 16)
    assert {p.name: p.read_bytes() for p in derived} == files


def test_ivf_flat_trains_on_40_vectors_a_list_not_on_the_first_batch_alone() -> None:
    # the 1M bench trained 4,000 lists on its first 50,000-vector batch (FAISS wants 39 a list)
    assert vec.choose_spec(1_000_000, "ivf").params["train_size"] == 160_000
    spec = vec.choose_spec(300, "ivf", {"nlist": 4})
    assert spec.params["train_size"] == 300  # never more than the vectors there are
    seen: list[int] = []
    original = vec.backend("ivf").new

    def recording(spec: vec.IndexSpec, dimension: int, training: np.ndarray | None = None) -> object:
        seen.append(0 if training is None else len(training))
        return original(spec, dimension, training)

    data = _unit(300)
    batches = [(np.arange(s, s + 100), data[s : s + 100]) for s in range(0, 300, 100)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vec.backend("ivf"), "new", recording)
        index = vec.build_index(spec, DIM, iter(batches))
    assert seen == [300] and index.ntotal == 300  # all three batches, not the first one
