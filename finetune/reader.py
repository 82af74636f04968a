"""The reader adapter: LoRA on the packaged 0.5B generator for short cited answers, abstentions and
the verifier's yes/no (rows from :mod:`finetune.reader_data`).

The recipe, top to bottom:

1. build the rows (HaluEval QA pairs only; the SQuAD articles it is measured on are never seen);
2. load the base model in bfloat16 and put LoRA on the top ``lora.top_layers`` decoder layers;
3. train with ``transformers.Trainer``, the loss on the answer tokens only;
4. save the adapter with a card (data card, settings, losses) for ``rag_app`` to load.

Why not TRL's ``SFTTrainer`` here (the SFT recipe uses it): its collator pads on the right and
the model computes 151,936 logits at every position, most of them prompt tokens whose loss is
masked anyway. Padding on the left puts every answer at the end, so the model is asked for the
logits of the last few positions only (``logits_to_keep``): on two CPU cores this makes a step
about a third cheaper, which is the difference between a run of one hour and of ninety minutes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.common import base_model_folder, log_callback, peak_rss_mb, time_limit
from finetune.config import TrainingError
from finetune.reader_data import ReaderMix, write_reader_dataset
from rag_app.settings import DEFAULT_GENERATOR, Settings


@dataclass
class ReaderRecipe:
    """What to train; every field has a default that reproduces the packaged adapter."""

    data: Path = Path("../shared/data/halueval-qa/qa_pairs.jsonl")
    """HaluEval QA rows (pairs below 5,000 are used)."""
    out: Path = Path("runs/reader")
    model: str = DEFAULT_GENERATOR
    mix: ReaderMix = field(default_factory=lambda: ReaderMix(600, 150, 150, 150, sources=3))
    validation_mix: ReaderMix = field(default_factory=lambda: ReaderMix(60, 15, 15, 15, sources=3))
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    top_layers: int = 8
    """LoRA on the last this many decoder layers (backpropagation stops there)."""
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 2
    epochs: float = 1.0
    init_adapter: Path | None = None
    """Continue training this adapter (a second round with another mix) instead of a new one."""
    max_minutes: float | None = None
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_layers < 1:
            raise TrainingError(f"top_layers must be at least 1, got {self.top_layers}")


def train_reader(recipe: ReaderRecipe, settings: Settings | None = None) -> dict[str, Any]:
    """Build the rows, train the adapter, save it under ``recipe.out / "adapter"``; returns the card."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    data_dir = recipe.out / "data"
    data_card = write_reader_dataset(
        recipe.data, data_dir, mix=recipe.mix, validation_mix=recipe.validation_mix, seed=recipe.seed
    )
    base = base_model_folder(recipe.model, settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    layers = int(model.config.num_hidden_layers)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=recipe.r,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.dropout,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(max(0, layers - recipe.top_layers), layers)),
    )
    if recipe.init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(recipe.init_adapter), is_trainable=True)
    else:
        model = get_peft_model(model, lora)
    train = _encode(data_dir / "train.jsonl", tokenizer)
    validation = _encode(data_dir / "validation.jsonl", tokenizer)
    steps = max(1, math.ceil(len(train) * recipe.epochs / (recipe.batch_size * recipe.grad_accum)))
    args = TrainingArguments(
        output_dir=str(recipe.out / "checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=recipe.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=TailCollator(tokenizer.pad_token_id or tokenizer.eos_token_id),
        compute_loss_func=tail_loss,
    )
    trainer.add_callback(log_callback())
    if recipe.max_minutes is not None:
        trainer.add_callback(time_limit(recipe.max_minutes))
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    evaluated = trainer.evaluate()
    adapter = recipe.out / "adapter"
    model.save_pretrained(str(adapter))
    card = {
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(recipe).items()},
        "base_model": recipe.model,
        "data": data_card,
        "train_rows": len(train),
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "eval_loss": float(evaluated["eval_loss"]),
        "loss_history": [float(h["loss"]) for h in trainer.state.log_history if "loss" in h],
        "train_seconds": round(seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
    }
    (adapter / "reader-card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def _encode(path: Path, tokenizer: Any) -> list[dict[str, Any]]:
    """Token ids of each chat row and how many of its last tokens are the answer."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
            answer = row["completion"][0]["content"] + "<|im_end|>"
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            rows.append({"input_ids": prompt_ids + answer_ids, "answer_tokens": len(answer_ids)})
    if not rows:
        raise TrainingError(f"{path} has no rows")
    return rows


class TailCollator:
    """Left-pads a batch so every answer ends the sequence; keeps logits for the answer span only."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        tail = max(r["answer_tokens"] for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), tail), -100, dtype=torch.long)
        for i, row in enumerate(rows):
            seq = torch.tensor(row["input_ids"])
            ids[i, width - len(seq) :] = seq
            mask[i, width - len(seq) :] = 1
            n = row["answer_tokens"]
            labels[i, tail - n :] = seq[-n:]
        # logits at positions -tail-1 .. -2 predict the last ``tail`` tokens
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits_to_keep": tail + 1}


def tail_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy of the kept logits (all but the last) against the answer tokens."""
    import torch

    logits = outputs.logits[:, :-1, :].float()
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
    return loss / count
