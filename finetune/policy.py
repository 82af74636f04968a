"""The policy the alignment recipes train: the base generator, optionally with an SFT adapter.

DPO and RLHF both start here. With an SFT adapter the policy trains that adapter further (the
usual SFT -> DPO order) and the reference is the SFT model; without one, a fresh LoRA adapter is
added by the trainer and the reference is the base model with the adapter switched off, so no
second copy of the weights is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.common import (
    adapter_path,
    base_model_folder,
    check_adapter_base,
    model_bytes,
    register_run,
    save_base_record,
)
from finetune.config import TrainArgs, TrainingError
from rag_app.packaged import available_memory
from rag_app.settings import Settings

REFERENCE_HEADROOM = 1.5
"""A second copy needs its weights plus activations and the optimizer's share: this many times its size."""


def load_policy(
    model_name: str, sft_adapter: str | None, train: TrainArgs, settings: Settings
) -> tuple[Any, Any, Path]:
    """The model to train, its tokenizer (with a pad token) and the base folder.

    With ``sft_adapter`` (a folder or a registry name) the model is a ``PeftModel`` whose adapter
    is trainable; an adapter trained on other base weights is refused.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base_model_folder(model_name, settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(f"base model {base} has no chat template: the pairs are chat messages")
    dtype = torch.bfloat16 if train.bf16 else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if sft_adapter:
        from peft import PeftModel

        folder, record = adapter_path(sft_adapter, settings)
        check_adapter_base(sft_adapter, record, folder, base)
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    return model, tokenizer, base


def reference_copy(base: Path, sft_adapter: str | None, train: TrainArgs, settings: Settings) -> Any:
    """A second, frozen copy of the reference model, after checking it fits in free memory."""
    free = available_memory()
    need = model_bytes(base) * REFERENCE_HEADROOM
    if free is not None and need > free:
        raise TrainingError(
            f"reference: copy needs about {need / 2**30:.1f} GiB for a second model, and "
            f"{free / 2**30:.1f} GiB is free: use reference: adapter-disabled (the same weights "
            "with the adapter switched off; no second copy)"
        )
    model, _, _ = load_policy(str(base), sft_adapter, train, settings)
    if sft_adapter:
        model = model.merge_and_unload()
    return model.eval().requires_grad_(False)


def save_policy(trainer: Any, tokenizer: Any, weights: Path, model_name: str, base: Path) -> None:
    """The trained adapter only (not TRL's frozen "ref" copy), its tokenizer and its base record."""
    model = trainer.model
    if hasattr(model, "peft_config") and "ref" in model.peft_config:
        model.save_pretrained(str(weights), selected_adapters=["default"])
    else:
        trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    save_base_record(weights, model_name, base)


def register_policy(
    recipe: Any, method: str, base: Path, weights: Path, metrics: dict[str, Any], settings: Settings
) -> str:
    """Register an aligned adapter (DPO, RLHF) with its recipe's settings as hyperparameters."""
    hyper = recipe.model_dump(mode="json", exclude={"data", "register_adapter", "name"})
    return register_run(
        name=recipe.name,
        output_dir=recipe.train.output_dir,
        weights=weights,
        model=recipe.model,
        base=base,
        method=method,
        data=recipe.data.train,
        hyperparameters=hyper,
        metrics=metrics,
        settings=settings,
    )
