"""RLHF against hallucination: online RL of a LoRA policy with TRL's GRPO or RLOO trainer.

The recipe, top to bottom:

1. the policy (:mod:`finetune.policy`): the base generator or it with an SFT adapter;
2. the prompts: the distinct prompts of preference rows, each with its sources, gold answers,
   whether the sources hold the answer and which source does (``meta``);
3. the reward, one function per part so each part's curve is logged (:class:`AnswerReward`):
   the reward model's score and/or the guard's support of the answer against its sources, minus
   ``citation_penalty`` for an answer citing nothing, a source that does not exist or not the
   right one, plus ``abstention_bonus`` for the abstention sentence where the sources lack the
   answer (minus it where they hold it), minus ``unsupported_penalty`` for answering anyway;
4. sample ``num_generations`` short answers per prompt, update with the group-relative
   advantage and a KL penalty (``beta``) to the reference (the policy before RL);
5. save the adapter, the reward curve (``reward_curve.json``) and register it (method ``rlhf``).

    from finetune.config import RLHFRecipe
    from finetune.rlhf import rlhf
    result = rlhf(RLHFRecipe(model="Qwen2.5-Coder-0.5B-Instruct", reward_model="reward-0.5b"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from finetune.common import (
    RunResult,
    count_trainable,
    finish,
    lora_config,
    prepare,
    train_and_evaluate,
    trainer_kwargs,
)
from finetune.config import RLHFRecipe, TrainingError
from finetune.policy import load_policy, register_policy, save_policy
from finetune.preferences import read_pairs
from rag_app.not_found import is_not_found
from rag_app.prompting import cited_numbers
from rag_app.settings import Settings

CURVE_NAME = "reward_curve.json"


def rlhf(recipe: RLHFRecipe, settings: Settings | None = None) -> RunResult:
    """Train per ``recipe``; returns where the adapter is, its metrics and the reward curve."""
    from datasets import Dataset

    settings = prepare(recipe.train, settings)
    prompts = prompt_rows(recipe.data.train, recipe.data.max_train_rows)
    model, tokenizer, base = load_policy(recipe.model, recipe.sft_adapter, recipe.train, settings)
    reward = AnswerReward(recipe, settings)
    config_cls, trainer_cls = _algorithm(recipe.algorithm)
    kwargs = trainer_kwargs(recipe.train, has_validation=False)
    args = config_cls(
        **kwargs,
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        beta=recipe.beta,
        reward_weights=reward.weights,
        log_completions=False,
    )
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward.functions,
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
        peft_config=None if recipe.sft_adapter else lora_config(recipe.lora, base),
    )
    metrics, history = train_and_evaluate(trainer, False, recipe.train.max_minutes)
    curve = reward_curve(trainer.state.log_history)
    metrics.update(_curve_summary(curve))
    metrics["trainable_params"], metrics["total_params"] = count_trainable(trainer.model)
    metrics["train_prompts"] = len(prompts)

    out = recipe.train.output_dir
    weights = out / "adapter"
    save_policy(trainer, tokenizer, weights, recipe.model, base)
    out.mkdir(parents=True, exist_ok=True)
    (out / CURVE_NAME).write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    result = RunResult(out, weights, metrics, history)
    if recipe.register_adapter:
        result.adapter_name = register_policy(recipe, "rlhf", base, weights, metrics, settings)
    return finish(result, recipe)


def _algorithm(name: str) -> tuple[Any, Any]:
    if name == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    from trl import GRPOConfig, GRPOTrainer

    return GRPOConfig, GRPOTrainer


def prompt_rows(path: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """The distinct prompts of preference rows with what the reward needs from their ``meta``."""
    rows = read_pairs(path, with_meta=True)
    seen: set[str] = set()
    out = []
    for n, row in enumerate(rows, 1):
        meta = row.get("meta") or {}
        if "passages" not in meta:
            raise TrainingError(
                f"{path} row {n}: no meta.passages (the sources the reward checks answers against): "
                "build the rows with `rag-app finetune preferences`"
            )
        key = json.dumps(row["prompt"], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "prompt": row["prompt"],
                "passages": [str(p) for p in meta["passages"]],
                "answers": [str(a) for a in meta.get("answers") or []],
                "answerable": bool(meta.get("answerable", True)),
                "cited": int(meta["cited"]) if meta.get("cited") else 0,
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out


class AnswerReward:
    """The parts of the RLHF reward, as TRL reward functions (``prompts``, ``completions`` and the
    dataset's columns in; one float per completion out), with their weights."""

    def __init__(self, recipe: RLHFRecipe, settings: Settings) -> None:
        self.recipe = recipe
        self.settings = settings
        self.reward_model: Any = None
        if recipe.reward_model:
            from finetune.reward import RewardModel

            self.reward_model = RewardModel.load(recipe.reward_model, settings)
        self._guard: Any = None

    @property
    def functions(self) -> list[Any]:
        parts = [self.citation, self.abstention]
        if self.recipe.guard_weight > 0:
            parts.append(self.grounding)
        if self.reward_model is not None:
            parts.append(self.preference)
        return parts

    @property
    def weights(self) -> list[float]:
        weights = [1.0, 1.0]
        if self.recipe.guard_weight > 0:
            weights.append(self.recipe.guard_weight)
        if self.reward_model is not None:
            weights.append(self.recipe.reward_model_weight)
        return weights

    @property
    def guard(self) -> Any:
        if self._guard is None:
            from rag_app.embeddings import create_embedder
            from rag_app.guard import Guard

            g = self.settings.guard
            self._guard = Guard(
                create_embedder(self.settings), model_path=g.model_path, threshold=g.threshold
            )
        return self._guard

    def citation(
        self, completions: Sequence[Any], passages: Sequence[list[str]], cited: Sequence[int], **_: Any
    ) -> list[float]:
        """``-citation_penalty`` for an answer citing nothing, a missing source, or not the right one."""
        out = []
        for text, shown, gold in zip(_texts(completions), passages, cited, strict=True):
            numbers = cited_numbers(text)
            if is_not_found(text):
                out.append(0.0)
            elif (
                not numbers or any(not 0 < n <= len(shown) for n in numbers) or (gold and gold not in numbers)
            ):
                out.append(-self.recipe.citation_penalty)
            else:
                out.append(0.0)
        return out

    def abstention(self, completions: Sequence[Any], answerable: Sequence[bool], **_: Any) -> list[float]:
        """The abstention sentence: ``+bonus`` where the sources lack the answer, ``-bonus`` where they
        hold it; an answer where they lack it: ``-unsupported_penalty``."""
        r = self.recipe
        out = []
        for text, holds in zip(_texts(completions), answerable, strict=True):
            if is_not_found(text):
                out.append(-r.abstention_bonus if holds else r.abstention_bonus)
            else:
                out.append(0.0 if holds else -r.unsupported_penalty)
        return out

    def grounding(self, completions: Sequence[Any], passages: Sequence[list[str]], **_: Any) -> list[float]:
        """The guard's support (0 to 1) of each answer against its prompt's sources; 0 for abstentions."""
        return [
            0.0 if is_not_found(text) or not text.strip() else float(self.guard.check(text, shown).score)
            for text, shown in zip(_texts(completions), passages, strict=True)
        ]

    def preference(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        """The reward model's score of each answer to its prompt, squashed to (0, 1) by a sigmoid so
        its scale (an unbounded logit) matches the other parts'."""
        scores = self.reward_model.score(list(prompts), _texts(completions))
        return [1.0 / (1.0 + math.exp(-s)) for s in scores]


def _texts(completions: Sequence[Any]) -> list[str]:
    """Completion texts: TRL passes chat completions as ``[{"role": "assistant", "content": ...}]``."""
    return [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]


def reward_curve(log_history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """Per logged step: the mean reward, each part's mean and the KL to the reference."""
    curve: list[dict[str, float]] = []
    for entry in log_history:
        if "reward" not in entry:
            continue
        point = {"step": float(entry.get("step", len(curve) + 1)), "reward": float(entry["reward"])}
        for key, value in entry.items():
            if (key.startswith("rewards/") and key.endswith("/mean")) or key == "kl":
                point[key] = float(value)
        curve.append(point)
    return curve


def _curve_summary(curve: Sequence[dict[str, float]]) -> dict[str, float]:
    if not curve:
        return {}
    k = max(1, len(curve) // 4)
    first = sum(p["reward"] for p in curve[:k]) / k
    last = sum(p["reward"] for p in curve[-k:]) / k
    return {"reward_first_quarter": round(first, 4), "reward_last_quarter": round(last, 4)}
