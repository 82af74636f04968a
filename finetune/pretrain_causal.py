"""Causal-LM pretraining from scratch: a byte-level BPE tokenizer, then a small Llama-style decoder.

The recipe, top to bottom:

1. read the corpus (one document per text file) and train its BPE tokenizer with ``tokenizers``;
2. tokenize, join documents with EOS, cut into blocks of ``train.max_seq_length`` tokens, and
   hold out the last ``validation_share`` of the blocks;
3. build a ``LlamaForCausalLM`` of the configured size (random weights, tied embeddings);
4. train with the plain ``transformers.Trainer`` (next-token loss), then report the held-out loss
   and perplexity;
5. save model and tokenizer (with a ChatML chat template) to ``<output_dir>/model``: a folder that
   ``rag-app finetune sft --model <folder>`` and ``generator.model`` accept.

    from finetune.config import CausalPretrainRecipe
    from finetune.pretrain_causal import pretrain_causal
    result = pretrain_causal(CausalPretrainRecipe(corpus=["notes/"], n_layer=2, n_embd=64))
"""

from __future__ import annotations

import math
from typing import Any

from finetune.common import (
    RunResult,
    causal_lm_trainer,
    finish,
    require,
    set_threads,
    train_and_evaluate,
)
from finetune.config import CausalPretrainRecipe
from finetune.corpus import pack_blocks, read_corpus, split_blocks, train_bpe_tokenizer


def pretrain_causal(recipe: CausalPretrainRecipe) -> RunResult:
    """Train tokenizer and model per ``recipe``; returns the model folder and its metrics."""
    require("datasets")
    set_threads(recipe.train)
    docs = read_corpus(recipe.corpus)
    tokenizer = train_bpe_tokenizer(docs, recipe.vocab_size)
    blocks = pack_blocks(docs, tokenizer, recipe.train.max_seq_length)
    train_blocks, validation_blocks = split_blocks(blocks, recipe.validation_share)

    model = build_model(recipe, tokenizer)
    trainer = build_trainer(recipe, model, tokenizer, train_blocks, validation_blocks)
    metrics, history = train_and_evaluate(trainer, True, recipe.train.max_minutes)
    metrics.update(
        vocab_size=len(tokenizer),
        train_blocks=len(train_blocks),
        validation_blocks=len(validation_blocks),
        parameters=sum(p.numel() for p in model.parameters()),
    )

    weights = recipe.train.output_dir / "model"
    trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    return finish(RunResult(recipe.train.output_dir, weights, metrics, history), recipe)


def build_model(recipe: CausalPretrainRecipe, tokenizer: Any) -> Any:
    """A randomly initialised Llama-style decoder sized by the recipe."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.train.seed)
    width = recipe.intermediate_size or 32 * math.ceil(recipe.n_embd * 8 / 3 / 32)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.n_embd,
        intermediate_size=width,
        num_hidden_layers=recipe.n_layer,
        num_attention_heads=recipe.n_head,
        num_key_value_heads=recipe.n_head,
        max_position_embeddings=recipe.train.max_seq_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def build_trainer(
    recipe: CausalPretrainRecipe,
    model: Any,
    tokenizer: Any,
    train: list[list[int]],
    validation: list[list[int]],
) -> Any:
    """``transformers.Trainer`` with the causal-LM collator (labels = inputs, shifted in the model)."""
    return causal_lm_trainer(recipe.train, model, tokenizer, train, validation)
