"""What the training tests share: a small regular corpus and a tiny random-weight Llama built from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_app.prompting import NOT_FOUND

TOPICS = ["river", "mountain", "forest", "harbour", "library", "garden", "bridge", "castle"]


def corpus_docs() -> list[str]:
    """Small, regular English-like documents: one sentence a line (NSP pairs are lines)."""
    docs = []
    for i, topic in enumerate(TOPICS):
        lines = [
            f"The {topic} near the old town was built in {1800 + 7 * i}.",
            f"Visitors to the {topic} often arrive by train in the morning.",
            f"In winter the {topic} is quiet and the paths are covered in snow.",
            f"The guide says the {topic} has {3 + i} famous views and one small cafe.",
        ]
        docs.append("\n".join(lines * 3))
    return docs


def build_tiny_llama(folder: Path, extra_text: tuple[str, ...] = (), seed: int = 0) -> Path:
    """A random-weight Llama (2 layers, hidden 64) with a BPE tokenizer and a ChatML template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune.corpus import train_bpe_tokenizer

    docs = [*corpus_docs(), NOT_FOUND, "Sources: Question: answer cite [1] [2] [3]", *extra_text]
    tokenizer = train_bpe_tokenizer(docs, vocab_size=400)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        initializer_range=0.25,  # with 0.02 the logits are near-flat and frozen-base methods barely move them
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread (and the machine is shared); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
