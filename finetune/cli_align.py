"""The preference-training commands of ``rag-app finetune`` (mounted by :mod:`finetune.cli`):
reward model, DPO, RLHF. They share one set of training options; the training code is imported
inside each command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from finetune.cli_options import CONFIG_OPTION, SAVE_OPTION, run_recipe
from rag_app.cli_common import cli_settings

_TRAINING_KEYS = {
    "model": "model", "out": "train.output_dir", "max_steps": "train.max_steps",
    "max_minutes": "train.max_minutes", "lr": "train.learning_rate", "name": "name",
    "register": "register_adapter", "sft_adapter": "sft_adapter", "beta": "beta", "loss_type": "loss_type",
    "reference": "reference", "algorithm": "algorithm", "reward_model": "reward_model",
    "guard_weight": "guard_weight",
}  # fmt: skip
"""Command-line option -> the recipe key it sets, for the alignment commands."""


def _alignment_recipe(cls: type, options: dict[str, Any]) -> Any:
    """The recipe from ``--config-file`` plus the options given (``--data`` names both pair files)."""
    from finetune.config import build_recipe

    data_dir = options.pop("data_dir", None)
    config_file = options.pop("config_file", None)
    overrides = {_TRAINING_KEYS[k]: v for k, v in options.items() if k in _TRAINING_KEYS}
    if data_dir is not None:
        overrides.update(
            {"data.train": data_dir / "train.jsonl", "data.validation": data_dir / "validation.jsonl"}
        )
    return build_recipe(cls, config_file, **overrides)


def _training_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every alignment command shares (output, budget, learning rate, registry name)."""
    for option in reversed(
        [
            CONFIG_OPTION,
            click.option("--model", default=None, help="Base model (default: the recipe's)."),
            click.option(
                "--data",
                "data_dir",
                type=click.Path(file_okay=False, exists=True, path_type=Path),
                default=None,
                help="Folder written by `rag-app finetune preferences` (train.jsonl, validation.jsonl).",
            ),
            click.option("--out", type=click.Path(path_type=Path), default=None, help="train.output_dir"),
            click.option("--max-steps", type=int, default=None),
            click.option(
                "--max-minutes", type=float, default=None, help="Stop training after this many minutes."
            ),
            click.option("--lr", type=float, default=None, help="train.learning_rate"),
            click.option("--name", default=None, help="Registry name of the adapter."),
            click.option(
                "--register/--no-register", default=None, help="Record it in the registry (default on)."
            ),
            SAVE_OPTION,
        ]
    ):
        function = option(function)
    return function


@click.command("reward")
@_training_options
@click.pass_context
def finetune_reward(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Train a reward model (TRL RewardTrainer, LoRA + a scalar head) on preference pairs.

    Reports pairwise accuracy on the validation pairs beside the guard used as a reward.

    \b
    Example:
      rag-app finetune reward --config-file finetune/configs/reward.yaml --data data/prefs --max-minutes 20
    """
    from finetune.config import RewardRecipe
    from finetune.reward import train_reward

    recipe = _alignment_recipe(RewardRecipe, options)
    run_recipe(recipe, save_config, lambda: train_reward(recipe, cli_settings(ctx)))


@click.command("dpo")
@_training_options
@click.option("--sft-adapter", default=None, help="Start from this SFT adapter (folder or registry name).")
@click.option("--beta", type=float, default=None)
@click.option("--loss-type", type=click.Choice(["sigmoid", "ipo", "hinge", "robust"]), default=None)
@click.option("--reference", type=click.Choice(["adapter-disabled", "copy"]), default=None)
@click.pass_context
def finetune_dpo(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Direct preference optimisation of a LoRA adapter (TRL DPOTrainer), after SFT or from the base.

    \b
    Examples:
      rag-app finetune dpo --data data/prefs --sft-adapter reader-sft --beta 0.1 --max-minutes 30
      rag-app finetune dpo --config-file finetune/configs/dpo.yaml --loss-type ipo
    """
    from finetune.config import DPORecipe
    from finetune.dpo import dpo

    recipe = _alignment_recipe(DPORecipe, options)
    run_recipe(recipe, save_config, lambda: dpo(recipe, cli_settings(ctx)))


@click.command("rlhf")
@_training_options
@click.option("--algorithm", type=click.Choice(["grpo", "rloo"]), default=None)
@click.option("--sft-adapter", default=None, help="Start the policy from this adapter (folder or name).")
@click.option("--reward-model", default=None, help="A reward model (folder or registry name).")
@click.option("--guard-weight", type=float, default=None)
@click.option("--beta", type=float, default=None, help="KL penalty to the reference.")
@click.pass_context
def finetune_rlhf(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Online RL against hallucination (TRL GRPO or RLOO) of a LoRA policy; the reward curve is logged.

    Reward: the reward model and/or the guard's support, minus a penalty for a missing or wrong
    citation, plus a bonus for abstaining where the sources lack the answer; KL to the reference.

    \b
    Example:
      rag-app finetune rlhf --data data/prefs --reward-model reward-0.5b --max-steps 30
    """
    from finetune.config import RLHFRecipe
    from finetune.rlhf import rlhf

    recipe = _alignment_recipe(RLHFRecipe, options)
    run_recipe(recipe, save_config, lambda: rlhf(recipe, cli_settings(ctx)))


COMMANDS = (finetune_reward, finetune_dpo, finetune_rlhf)
