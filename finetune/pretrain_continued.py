"""Continued (domain-adaptive) pretraining of the generator on the chunks of an index.

The recipe, top to bottom:

1. read the chunk texts of the index (its SQLite docstore, read-only);
2. resolve the base model folder (the packaged GGUF is converted once: GGUF weights cannot train)
   and tokenize with its own tokenizer; join chunks with EOS, cut blocks, hold out a share;
3. wrap the model in a LoRA adapter (``method: lora``) or train every weight (``method: full``);
4. train with the plain ``Trainer`` on next-token loss; report held-out loss and perplexity,
   measured before training too, so the gain on the domain text is visible;
5. save the adapter (registered in the adapter registry, promotable like an SFT adapter) or the model.
"""

from __future__ import annotations

import math
from typing import Any

from finetune.common import (
    RunResult,
    base_model_folder,
    causal_lm_trainer,
    count_trainable,
    finish,
    require,
    set_threads,
    train_and_evaluate,
)
from finetune.config import ContinuedPretrainRecipe
from finetune.corpus import index_texts, pack_blocks, split_blocks, texts_digest
from rag_app.settings import Settings


def pretrain_continued(recipe: ContinuedPretrainRecipe, settings: Settings | None = None) -> RunResult:
    """Adapt the generator to the index's text per ``recipe``; returns the weights and metrics."""
    require("datasets")
    require("peft")
    settings = settings or Settings.load()
    set_threads(recipe.train)
    texts = index_texts(recipe.index)
    base = base_model_folder(recipe.model, settings)
    model, tokenizer = load_model(base, recipe)
    blocks = pack_blocks(texts, tokenizer, recipe.train.max_seq_length)
    train_blocks, validation_blocks = split_blocks(blocks, recipe.validation_share)

    trainer = build_trainer(recipe, model, tokenizer, train_blocks, validation_blocks)
    before = float(trainer.evaluate()["eval_loss"])
    metrics, history = train_and_evaluate(trainer, True, recipe.train.max_minutes)
    metrics.update(
        eval_loss_before=before, perplexity_before=math.exp(before) if before < 50 else float("inf")
    )
    metrics["trainable_params"], metrics["total_params"] = count_trainable(trainer.model)
    metrics.update(
        chunks=len(texts), train_blocks=len(train_blocks), validation_blocks=len(validation_blocks)
    )

    weights = recipe.train.output_dir / ("adapter" if recipe.method == "lora" else "model")
    trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    result = RunResult(recipe.train.output_dir, weights, metrics, history)
    if recipe.method == "lora":
        result.adapter_name = _register(recipe, settings, base, weights, metrics, texts_digest(texts))
    return finish(result, recipe)


def load_model(base: Any, recipe: ContinuedPretrainRecipe) -> tuple[Any, Any]:
    """The base model (wrapped in LoRA for ``method: lora``) and its tokenizer."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if recipe.train.bf16 else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if recipe.method == "lora":
        lora = recipe.lora
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
        )
        model = get_peft_model(model, config)
    return model, tokenizer


def build_trainer(
    recipe: ContinuedPretrainRecipe,
    model: Any,
    tokenizer: Any,
    train: list[list[int]],
    validation: list[list[int]],
) -> Any:
    return causal_lm_trainer(recipe.train, model, tokenizer, train, validation)


def _register(
    recipe: ContinuedPretrainRecipe,
    settings: Settings,
    base: Any,
    weights: Any,
    metrics: dict[str, float],
    data_hash: str,
) -> str:
    import time

    from finetune.registry import Registry
    from rag_app.models import weights_digest

    name = f"{recipe.train.output_dir.name}-cpt-{time.strftime('%Y%m%d-%H%M%S')}"
    Registry.from_settings(settings).register(
        name,
        weights,
        base_model=recipe.model,
        base_hash=weights_digest(base),
        method="continued-lora",
        data_hash=data_hash,
        hyperparameters={
            "train": recipe.train.model_dump(mode="json"),
            "lora": recipe.lora.model_dump(mode="json"),
        },
        metrics=metrics,
    )
    return name
