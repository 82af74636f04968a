"""The embedders on the packaged all-MiniLM-L6-v2: ONNX fp32 and int8 against sentence-transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_data

from rag_app.embeddings import BACKENDS, Embedder, create_embedder, onnx_backend
from rag_app.embeddings.onnx_backend import OnnxEmbedder, length_batches
from rag_app.errors import ConfigError
from rag_app.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """50 real passages of varied length: scifact abstracts, some cut to a sentence or two."""
    texts: list[str] = []
    with shared_data("scifact", "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"].strip()
            if text:
                texts.append(text if len(texts) % 3 else ". ".join(text.split(". ")[:2]))
            if len(texts) == 50:
                break
    return texts


@pytest.fixture(scope="module")
def torch_embedder(settings: Settings) -> Embedder:
    return create_embedder(settings.model_copy(update={"embedding": _embedding(settings, backend="torch")}))


@pytest.fixture(scope="module")
def fp32_embedder(settings: Settings) -> Embedder:
    return create_embedder(settings.model_copy(update={"embedding": _embedding(settings, quantize=False)}))


@pytest.fixture(scope="module")
def reference(torch_embedder: Embedder, sentences: list[str]) -> np.ndarray:
    return torch_embedder.embed_documents(sentences)


def _embedding(settings: Settings, **changes: Any) -> Any:
    return settings.embedding.model_copy(update=changes)


def test_fp32_matches_torch(fp32_embedder: Embedder, reference: np.ndarray, sentences: list[str]) -> None:
    cosine = (fp32_embedder.embed_documents(sentences) * reference).sum(axis=1)
    assert cosine.min() >= 0.999


def test_int8_close_to_torch(embedder: Embedder, reference: np.ndarray, sentences: list[str]) -> None:
    cosine = (embedder.embed_documents(sentences) * reference).sum(axis=1)
    assert cosine.mean() >= 0.98
    assert cosine.min() >= 0.95


def test_identity_and_numerics(embedder: Embedder, fp32_embedder: Embedder, torch_embedder: Embedder) -> None:
    assert isinstance(embedder, OnnxEmbedder) and isinstance(embedder, Embedder)
    assert embedder.model_id == "all-MiniLM-L6-v2@onnx-int8"
    assert fp32_embedder.model_id == "all-MiniLM-L6-v2@onnx-fp32"
    assert torch_embedder.model_id == "all-MiniLM-L6-v2@torch"
    for each in (embedder, fp32_embedder, torch_embedder):
        assert getattr(each, "model_name", None) == "all-MiniLM-L6-v2"
        assert (each.dimension, each.max_tokens) == (384, 256)


@pytest.mark.parametrize("which", ["embedder", "torch_embedder"])
def test_shape_dtype_norm(which: str, request: pytest.FixtureRequest, sentences: list[str]) -> None:
    model: Embedder = request.getfixturevalue(which)
    vectors = model.embed_documents(sentences[:10])
    assert vectors.shape == (10, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = model.embed_query("Does vitamin D lower the risk of fractures?")
    assert query.shape == (384,) and query.dtype == np.float32
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5


def test_order_preserved_after_length_sorting(
    fp32_embedder: Embedder, embedder: Embedder, sentences: list[str]
) -> None:
    forward = fp32_embedder.embed_documents(sentences, batch_size=4)
    backward = fp32_embedder.embed_documents(sentences[::-1], batch_size=4)
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    for i in (0, 1, 7):
        np.testing.assert_allclose(forward[i], fp32_embedder.embed_query(sentences[i]), atol=1e-5)
    # int8 quantizes activations with one scale per batch, so neighbours move a vector slightly
    forward = embedder.embed_documents(sentences, batch_size=4)
    backward = embedder.embed_documents(sentences[::-1], batch_size=4)
    assert (forward * backward[::-1]).sum(axis=1).min() > 0.99


def test_empty_list(embedder: Embedder, torch_embedder: Embedder) -> None:
    for model in (embedder, torch_embedder):
        empty = model.embed_documents([])
        assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_long_text_is_truncated(embedder: Embedder, fp32_embedder: Embedder) -> None:
    long_text = "Mitochondria regulate apoptosis through cytochrome c release. " * 400
    assert len(embedder.tokenizer.encode(long_text).ids) > 2000  # the public tokenizer does not truncate
    assert embedder.embed_documents([long_text, "short"]).shape == (2, 384)
    vectors = fp32_embedder.embed_documents([long_text, "short"])
    head = fp32_embedder.tokenizer.decode(fp32_embedder.tokenizer.encode(long_text).ids[1:255])
    assert float(vectors[0] @ fp32_embedder.embed_query(head)) > 0.9999


def test_embed_query_equals_single_document(embedder: Embedder, fp32_embedder: Embedder) -> None:
    query = "How do statins reduce cardiovascular events?"
    for model in (embedder, fp32_embedder):
        np.testing.assert_allclose(model.embed_query(query), model.embed_documents([query])[0], atol=1e-5)


def test_progress_counts_every_text(embedder: Embedder, sentences: list[str]) -> None:
    done: list[int] = []
    embedder.embed_documents(sentences, batch_size=8, progress=done.append)
    assert sum(done) == len(sentences) and max(done) <= 8 and len(done) >= len(sentences) // 8


def test_cache_is_reused(
    embedder: Embedder, settings: Settings, monkeypatch: pytest.MonkeyPatch, sentences: list[str]
) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    embedder.warm_up()
    path = embedder.onnx_file
    assert path.is_file() and path.name == "model.int8.onnx"
    assert path.parent.parent == settings.cache_dir / "onnx"
    before = path.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(onnx_backend, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_backend, "_quantize", no_export)
    again = create_embedder(settings)
    again.embed_documents(sentences[:2])
    assert path.stat().st_mtime_ns == before
    assert not list(path.parent.glob("*.tmp"))


def test_tokenizer_is_cheap(settings: Settings) -> None:
    fresh = OnnxEmbedder(settings)
    assert fresh.tokenizer.encode("hello world").tokens == ["[CLS]", "hello", "world", "[SEP]"]
    assert fresh._session is None  # weights not loaded for token counting


def test_length_batches_respect_budget() -> None:
    lengths = [5, 256, 40, 256, 3, 120, 256, 7] * 5
    batches = list(length_batches(lengths, max_count=16, token_budget=1024))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 1024
    firsts = [lengths[batch[0]] for batch in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_backend_table_and_bad_backend(settings: Settings) -> None:
    assert set(BACKENDS) == {"onnx", "torch"}
    bad: Any = "tf"
    broken = settings.model_copy(update={"embedding": _embedding(settings, backend=bad)})
    with pytest.raises(ConfigError, match=r"embedding.backend.*onnx, torch"):
        create_embedder(broken)


def test_importing_embeddings_is_light() -> None:
    code = (
        "import sys, rag_app.embeddings, rag_app.models, rag_app.embeddings.onnx_backend; "
        "heavy = ('torch', 'onnxruntime', 'transformers', 'sentence_transformers'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_local_folder_model(settings: Settings, tmp_path: Path) -> None:
    """A model named by a local folder (here a copy of the packaged one) gets its own cache entry."""
    import shutil

    packaged = OnnxEmbedder(settings).info.folder
    local = tmp_path / "my-minilm"
    shutil.copytree(packaged, local)
    model = OnnxEmbedder(settings.model_copy(update={"embedding": _embedding(settings, model=str(local))}))
    assert model.model_name == "my-minilm" and model.model_id == "my-minilm@onnx-int8"
    assert model.onnx_file.parent.name.startswith("my-minilm-")
