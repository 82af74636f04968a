"""Supervised fine-tuning of the generator: LoRA, QLoRA, prompt tuning, prefix tuning or full.

The recipe, top to bottom (TRL's ``SFTTrainer`` does the loop, PEFT the adapters):

1. ``setup``: check the method can run here (QLoRA needs CUDA), resolve the base model folder
   (the packaged GGUF is converted once to safetensors: GGUF-loaded weights cannot be trained);
2. load the chat rows (``prompt`` / ``completion``: the loss is on the completion only);
3. build the PEFT config for the method, or none for full fine-tuning;
4. train, evaluate (loss and perplexity on the validation rows), save the adapter (or model);
5. record it in the adapter registry, with the base model's hash and the data's hash.

    from finetune.config import SFTRecipe
    from finetune.sft import sft
    result = sft(SFTRecipe(method="lora", data={"train": "data/train.jsonl"}))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.common import (
    RunResult,
    base_model_folder,
    count_trainable,
    finish,
    has_cuda,
    lora_config,
    register_run,
    require,
    set_threads,
    train_and_evaluate,
    trainer_kwargs,
)
from finetune.config import LoraArgs, PromptArgs, SFTRecipe, TrainingError
from finetune.data import read_rows
from rag_app.settings import Settings

log = logging.getLogger(__name__)

QLORA_ON_CPU = (
    "QLoRA loads the base model in 4-bit with bitsandbytes, which needs a CUDA GPU, and none is "
    "available here: use --method lora (same adapter shape, full-precision base) on CPU"
)


def check_method(method: str) -> None:
    """Fail at once, before any model loads, when ``method`` cannot run on this machine."""
    if method != "qlora":
        return
    if not has_cuda():
        raise TrainingError(QLORA_ON_CPU)
    require("bitsandbytes", extra="gpu")


def sft(recipe: SFTRecipe, settings: Settings | None = None) -> RunResult:
    """Train per ``recipe``; returns where the adapter (or model) is and its metrics."""
    check_method(recipe.method)
    require("trl")
    require("peft")
    require("datasets")
    settings = settings or Settings.load()
    set_threads(recipe.train)
    base = base_model_folder(recipe.model, settings)
    model, tokenizer = load_base(base, recipe)
    train_rows, validation_rows = _load_rows(recipe)
    trainer = build_trainer(recipe, model, tokenizer, train_rows, validation_rows, base)
    kept = len(trainer.train_dataset)  # TRL drops rows whose completion was cut off entirely
    if kept == 0:
        raise TrainingError(
            f"all {len(train_rows)} training rows are longer than train.max_seq_length "
            f"({recipe.train.max_seq_length} tokens) up to their answer: raise it or use fewer distractors"
        )
    if kept < len(train_rows):
        log.warning(
            "%d of %d training rows are longer than train.max_seq_length (%d tokens) up to their answer "
            "and were dropped: raise it or use fewer distractors",
            len(train_rows) - kept, len(train_rows), recipe.train.max_seq_length,
        )  # fmt: skip
    metrics, history = train_and_evaluate(trainer, bool(validation_rows), recipe.train.max_minutes)
    metrics["trainable_params"], metrics["total_params"] = count_trainable(trainer.model)
    metrics["train_rows"], metrics["rows_dropped_too_long"] = kept, len(train_rows) - kept

    out = recipe.train.output_dir
    weights = out / ("model" if recipe.method == "full" else "adapter")
    trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    result = RunResult(out, weights, metrics, history)
    if recipe.register_adapter and recipe.method != "full":
        result.adapter_name = _register(recipe, settings, base, weights, metrics)
    return finish(result, recipe)


def load_base(folder: Path, recipe: SFTRecipe) -> tuple[Any, Any]:
    """The base model (4-bit for QLoRA) and its tokenizer, with a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(
            f"base model {folder} has no chat template: SFT on chat rows needs an instruct model"
        )
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if recipe.train.bf16 else torch.float32}
    if recipe.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if recipe.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=recipe.train.gradient_checkpointing
        )
    return model, tokenizer


def peft_config(method: str, lora: LoraArgs, prompt: PromptArgs, base: Path) -> Any:
    """The PEFT config for ``method`` (``None`` for full fine-tuning)."""
    from peft import PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType

    if method in {"lora", "qlora"}:
        return lora_config(lora, base)
    if method == "prompt":
        if prompt.init_text:
            return PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=prompt.num_virtual_tokens,
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=prompt.init_text,
                tokenizer_name_or_path=str(base),
            )
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt.num_virtual_tokens)
    if method == "prefix":
        return PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=prompt.num_virtual_tokens,
            prefix_projection=prompt.prefix_projection,
        )
    return None


def build_trainer(
    recipe: SFTRecipe,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    base: Path,
) -> Any:
    """TRL's ``SFTTrainer`` over prompt/completion rows (loss on the completion only)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **trainer_kwargs(recipe.train, has_validation=bool(validation_rows)),
        max_length=recipe.train.max_seq_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config(recipe.method, recipe.lora, recipe.prompt, base),
    )


def _load_rows(recipe: SFTRecipe) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Only the columns the trainer reads: ``prompt``/``completion`` (chat) or ``text``."""
    data = recipe.data
    train = [_columns(r) for r in read_rows(data.train, data.max_train_rows)]
    if not train:
        raise TrainingError(f"{data.train} has no rows")
    validation: list[dict[str, Any]] = []
    if data.validation is not None and data.validation.is_file():
        validation = [_columns(r) for r in read_rows(data.validation, data.max_validation_rows)]
    return train, validation


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in row and "completion" in row:
        return {"prompt": row["prompt"], "completion": row["completion"]}
    if "messages" in row:
        return {"messages": row["messages"]}
    if "text" in row:
        return {"text": row["text"]}
    raise TrainingError(f"a row has none of prompt/completion, messages or text: keys {sorted(row)}")


def _register(
    recipe: SFTRecipe, settings: Settings, base: Path, weights: Path, metrics: dict[str, float]
) -> str:
    """Record the adapter in the registry; returns its name."""
    hyper: dict[str, Any] = {"method": recipe.method, "train": recipe.train.model_dump(mode="json")}
    if recipe.method in {"lora", "qlora"}:
        hyper["lora"] = recipe.lora.model_dump(mode="json")
    else:
        hyper["prompt"] = recipe.prompt.model_dump(mode="json")
    return register_run(
        name=recipe.name,
        output_dir=recipe.train.output_dir,
        weights=weights,
        model=recipe.model,
        base=base,
        method=recipe.method,
        data=recipe.data.train,
        hyperparameters=hyper,
        metrics=metrics,
        settings=settings,
    )
