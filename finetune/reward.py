"""Reward model: a scalar head over a LoRA-adapted model, trained to score chosen above rejected.

The recipe, top to bottom (TRL's ``RewardTrainer`` does the loop, PEFT the adapter):

1. resolve the base folder and load it with a one-output classification head;
2. read the preference pairs (``rag-app finetune preferences``), refusing broken rows;
3. train a LoRA adapter plus the head (``modules_to_save=["score"]``) on the pairwise loss;
4. measure pairwise accuracy and the mean margin on the validation pairs, per negative type,
   beside the guard used as a reward with no training (:func:`guard_reward`);
5. save the adapter with a record of its base, and register it (method ``reward``).

    from finetune.config import RewardRecipe
    from finetune.reward import train_reward
    result = train_reward(RewardRecipe(model="Qwen2.5-Coder-0.5B-Instruct"))

:class:`RewardModel` loads a trained one to score answers (``rag-app finetune rlhf`` uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finetune.common import (
    RunResult,
    adapter_path,
    base_model_folder,
    check_adapter_base,
    count_trainable,
    finish,
    lora_config,
    prepare,
    register_run,
    rows_kept,
    save_base_record,
    train_and_evaluate,
    trainer_kwargs,
)
from finetune.config import RewardRecipe, TrainingError
from finetune.preferences import read_pair_splits, trainer_columns
from rag_app.not_found import is_not_found
from rag_app.settings import Settings

SCORE_BATCH = 8


def train_reward(recipe: RewardRecipe, settings: Settings | None = None) -> RunResult:
    """Train per ``recipe``; returns where the adapter is and its metrics (pairwise accuracy)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    settings = prepare(recipe.train, settings)
    base = base_model_folder(recipe.model, settings)
    train_rows, validation_rows = read_pair_splits(recipe.data, with_meta=True)
    model, tokenizer = load_classifier(base)
    lora = recipe.lora
    peft_config = lora_config(lora, base, "SEQ_CLS", modules_to_save=["score"])
    args = RewardConfig(
        **trainer_kwargs(recipe.train, has_validation=False),  # validation: pairwise_accuracy below
        max_length=recipe.train.max_seq_length,
        center_rewards_coefficient=recipe.center_rewards_coefficient,
        dataset_num_proc=None,
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([trainer_columns(r) for r in train_rows]),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if rows_kept(trainer) == 0:
        raise TrainingError(
            f"all {len(train_rows)} pairs are longer than train.max_seq_length "
            f"({recipe.train.max_seq_length} tokens): raise it"
        )
    metrics, history = train_and_evaluate(trainer, False, recipe.train.max_minutes)
    metrics["trainable_params"], metrics["total_params"] = count_trainable(trainer.model)
    metrics["train_pairs"] = rows_kept(trainer)

    weights = recipe.train.output_dir / "adapter"
    trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    save_base_record(weights, recipe.model, base)
    if validation_rows:
        scorer = RewardModel(trainer.model, tokenizer)
        metrics.update(pairwise_accuracy(validation_rows, scorer.score_rows, prefix="reward"))
        if recipe.guard_baseline:
            metrics.update(pairwise_accuracy(validation_rows, guard_reward(settings), prefix="guard"))
    result = RunResult(recipe.train.output_dir, weights, metrics, history)
    if recipe.register_adapter:
        result.adapter_name = register_run(
            name=recipe.name,
            output_dir=recipe.train.output_dir,
            weights=weights,
            model=recipe.model,
            base=base,
            method="reward",
            data=recipe.data.train,
            hyperparameters={
                "train": recipe.train.model_dump(mode="json"),
                "lora": lora.model_dump(mode="json"),
            },
            metrics=metrics,
            settings=settings,
        )
    return finish(result, recipe)


def load_classifier(base: Path) -> tuple[Any, Any]:
    """``base`` with a one-output classification head (new, random) and its tokenizer, with a pad token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(f"base model {base} has no chat template: the pairs are chat messages")
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class RewardModel:
    """A trained reward model: ``score(prompts, answers)`` -> one float per answer (higher is better)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, ref: str, settings: Settings | None = None) -> RewardModel:
        """A reward adapter (a folder or a registry name) on the base it was trained on; another
        base is refused (:func:`finetune.common.check_adapter_base`)."""
        import json

        from peft import PeftModel

        settings = settings or Settings.load()
        folder, record = adapter_path(ref, settings)
        saved = folder / "rag-app-base.json"
        if record is None and not saved.is_file():
            raise TrainingError(
                f"{ref}: no rag-app-base.json beside the adapter: which base it needs is unknown"
            )
        if record is not None and record.method != "reward":
            raise TrainingError(f"{ref} is a {record.method} adapter, not a reward model")
        model_name = (
            record.base_model if record else json.loads(saved.read_text(encoding="utf-8"))["base_model"]
        )
        base = base_model_folder(model_name, settings)
        check_adapter_base(ref, record, folder, base)
        model, tokenizer = load_classifier(base)
        model = PeftModel.from_pretrained(model, str(folder)).eval()
        return cls(model, tokenizer)

    def score_rows(self, rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[float]:
        """Scores of ``answers`` to the prompts of preference ``rows``."""
        return self.score([r["prompt"] for r in rows], answers)

    def score(self, prompts: Sequence[list[Any]], answers: Sequence[str]) -> list[float]:
        """Scores of ``answers``, each to its prompt (chat messages)."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template([*p, {"role": "assistant", "content": a}], tokenize=False)
            for p, a in zip(prompts, answers, strict=True)
        ]
        out: list[float] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for first in range(0, len(texts), SCORE_BATCH):
                    batch = self.tokenizer(
                        texts[first : first + SCORE_BATCH],
                        return_tensors="pt",
                        padding=True,
                        truncation=True,
                        max_length=1024,
                        add_special_tokens=False,
                    ).to(self.model.device)
                    out += [float(v) for v in self.model(**batch).logits[:, 0].float().cpu()]
        finally:
            self.model.train(was_training)
        return out


Scorer = Callable[[Sequence[dict[str, Any]], Sequence[str]], list[float]]
"""Scores answers to the prompts of preference rows: a trained reward model or the guard."""


def guard_reward(settings: Settings) -> Scorer:
    """The guard as a reward with no training: an answer scores its grounding against the prompt's
    sources (``meta.passages``); the abstention sentence scores the guard's threshold, so an answer
    is preferred to abstaining exactly when the guard would show it."""
    from rag_app.embeddings import create_embedder
    from rag_app.guard import Guard

    g = settings.guard
    guard = Guard(create_embedder(settings), model_path=g.model_path, threshold=g.threshold)

    def score_rows(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[float]:
        out = []
        for row, answer in zip(rows, answers, strict=True):
            if is_not_found(answer):
                out.append(guard.threshold)
            else:
                out.append(guard.check(answer, row["meta"]["passages"]).score)
        return out

    return score_rows


def pairwise_accuracy(rows: Sequence[dict[str, Any]], score: Scorer, *, prefix: str) -> dict[str, float]:
    """Share of pairs whose chosen answer scores above the rejected one (ties count half), overall
    and per negative type (``meta.type``)."""
    chosen = [r["chosen"][0]["content"] for r in rows]
    rejected = [r["rejected"][0]["content"] for r in rows]
    good, bad = score(rows, chosen), score(rows, rejected)
    wins = [1.0 if g > b else 0.5 if g == b else 0.0 for g, b in zip(good, bad, strict=True)]
    out = {
        f"{prefix}_pairwise_accuracy": round(sum(wins) / len(wins), 4),
        f"{prefix}_mean_margin": round(sum(g - b for g, b in zip(good, bad, strict=True)) / len(wins), 4),
    }
    by_type: dict[str, list[float]] = {}
    for row, win in zip(rows, wins, strict=True):
        by_type.setdefault(str((row.get("meta") or {}).get("type", "unknown")), []).append(win)
    for kind, values in sorted(by_type.items()):
        out[f"{prefix}_accuracy_{kind}"] = round(sum(values) / len(values), 4)
    return out
