"""Direct preference optimisation (Rafailov et al., 2023) of a LoRA adapter with TRL's ``DPOTrainer``.

The recipe, top to bottom:

1. the policy: the base generator, or it with an SFT adapter that DPO trains further
   (:mod:`finetune.policy`); the reference is the model before DPO: the same weights with the
   new adapter switched off (default), TRL's frozen copy of the SFT adapter, or a second model
   (``reference: copy``, checked against free memory first);
2. the preference pairs (``rag-app finetune preferences``), refusing broken rows;
3. train with the configured loss (``sigmoid``, ``ipo``, ``hinge``, ``robust``) and ``beta``;
4. report the reward margin and accuracy (chosen over rejected, in the policy's implicit
   reward) on the validation pairs before and after training;
5. save the adapter (with its base record) and register it (method ``dpo``).

    from finetune.config import DPORecipe
    from finetune.dpo import dpo
    result = dpo(DPORecipe(model="Qwen2.5-Coder-0.5B-Instruct", sft_adapter="reader-sft"))

ORPO and KTO: TRL 1.x keeps ORPO under ``trl.experimental`` and KTO as a separate trainer that
wants unpaired rows; neither is one config field away from DPO here, so only DPO's losses are kept.
"""

from __future__ import annotations

from typing import Any

from finetune.common import (
    RunResult,
    count_trainable,
    finish,
    lora_config,
    prepare,
    rows_kept,
    train_and_evaluate,
    trainer_kwargs,
)
from finetune.config import DPORecipe, TrainingError
from finetune.policy import load_policy, reference_copy, register_policy, save_policy
from finetune.preferences import read_pair_splits
from rag_app.settings import Settings


def dpo(recipe: DPORecipe, settings: Settings | None = None) -> RunResult:
    """Train per ``recipe``; returns where the adapter is and its metrics (reward margins)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    settings = prepare(recipe.train, settings)
    train_rows, validation_rows = read_pair_splits(recipe.data)
    model, tokenizer, base = load_policy(recipe.model, recipe.sft_adapter, recipe.train, settings)
    ref_model = None
    if recipe.reference == "copy":
        ref_model = reference_copy(base, recipe.sft_adapter, recipe.train, settings)
    args = DPOConfig(
        **trainer_kwargs(recipe.train, has_validation=bool(validation_rows)),
        beta=recipe.beta,
        loss_type=[recipe.loss_type],
        label_smoothing=recipe.label_smoothing,
        max_length=recipe.train.max_seq_length,
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer,
        peft_config=None if recipe.sft_adapter else lora_config(recipe.lora, base),
    )
    if rows_kept(trainer) == 0:
        raise TrainingError(f"no pair of {recipe.data.train} fits train.max_seq_length: raise it")
    before = _margins(trainer) if validation_rows else {}
    metrics, history = train_and_evaluate(trainer, False, recipe.train.max_minutes)
    metrics.update({f"{k}_before": v for k, v in before.items()})
    if validation_rows:
        metrics.update(_margins(trainer))
    metrics["trainable_params"], metrics["total_params"] = count_trainable(trainer.model)
    metrics["train_pairs"] = rows_kept(trainer)

    weights = recipe.train.output_dir / "adapter"
    save_policy(trainer, tokenizer, weights, recipe.model, base)
    result = RunResult(recipe.train.output_dir, weights, metrics, history)
    if recipe.register_adapter:
        result.adapter_name = register_policy(recipe, "dpo", base, weights, metrics, settings)
    return finish(result, recipe)


def _margins(trainer: Any) -> dict[str, float]:
    """The implicit reward's margin and accuracy (chosen over rejected) on the validation pairs."""
    evaluated = trainer.evaluate()
    keys = {
        "eval_rewards/margins": "reward_margin",
        "eval_rewards/accuracies": "reward_accuracy",
        "eval_loss": "eval_loss",
    }
    return {name: round(float(evaluated[key]), 4) for key, name in keys.items() if key in evaluated}
