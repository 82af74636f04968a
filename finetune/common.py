"""What every recipe needs: the base model folder, trainer arguments, and the run's record.

Kept small on purpose: each recipe module reads top to bottom and calls these few helpers.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import LoraArgs, TrainArgs, TrainingError, save_config
from rag_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a recipe returns (and writes as ``result.json`` in its output folder)."""

    output_dir: Path
    weights: Path
    """The adapter folder, or the full model folder."""
    metrics: dict[str, float]
    """``train_loss``, ``eval_loss``, ``perplexity`` (where there is a validation split), timings."""
    loss_history: list[float] = field(default_factory=list)
    adapter_name: str | None = None
    """The registry name, when the adapter was registered."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"], data["weights"] = str(self.output_dir), str(self.weights)
        return data


def base_model_folder(model: str, settings: Settings | None = None) -> Path:
    """A safetensors folder for ``model`` (a packaged name, a folder or a hub id), as the generator
    resolves it. The packaged GGUF is converted once (GGUF-loaded weights cannot be trained)."""
    from rag_app.models import generator_folder

    base = settings or Settings.load()
    return generator_folder(
        base.model_copy(update={"generator": base.generator.model_copy(update={"model": model})})
    )


def set_threads(args: TrainArgs) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def trainer_kwargs(args: TrainArgs, *, has_validation: bool) -> dict[str, Any]:
    """Keyword arguments shared by ``transformers.TrainingArguments`` and ``trl.SFTConfig``."""
    cuda = has_cuda()
    return {
        "output_dir": str(args.output_dir / "checkpoints"),
        "max_steps": args.max_steps,
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": args.batch_size,
        "gradient_accumulation_steps": args.grad_accum,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup_steps,
        "lr_scheduler_type": args.lr_scheduler,
        "logging_steps": args.logging_steps,
        "eval_strategy": "steps" if has_validation and args.eval_steps else "no",
        "eval_steps": args.eval_steps,
        "save_strategy": "steps" if args.save_checkpoints else "no",
        "report_to": [],
        "seed": args.seed,
        "data_seed": args.seed,
        "use_cpu": not cuda,
        "bf16": args.bf16,
        "activation_checkpointing": args.gradient_checkpointing,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def train_and_evaluate(
    trainer: Any, has_validation: bool, max_minutes: float | None = None
) -> tuple[dict[str, float], list[float]]:
    """Run ``trainer.train()`` (stopping after ``max_minutes``) then evaluate; metrics with
    perplexity, timings and peak memory."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints dicts to stdout, where the CLI prints JSON
    trainer.add_callback(log_callback())
    if max_minutes is not None:
        trainer.add_callback(time_limit(max_minutes))
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    steps = int(trainer.state.global_step)
    metrics: dict[str, float] = {
        "train_loss": float(out.training_loss),
        "steps": steps,
        "train_seconds": round(seconds, 2),
        "steps_per_s": round(steps / seconds, 4) if seconds > 0 else 0.0,
        "peak_rss_mb": peak_rss_mb(),
    }
    history = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    if not history and steps:  # fewer steps than logging_steps: the run's mean loss is its one point
        history = [float(out.training_loss)]
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    if tokens and seconds > 0:  # TRL's trainers count the tokens they trained on
        metrics["train_tokens"] = int(tokens[-1])
        metrics["train_tokens_per_s"] = round(float(tokens[-1]) / seconds, 1)
    if has_validation:
        evaluated = trainer.evaluate()
        loss = float(evaluated["eval_loss"])
        metrics["eval_loss"] = loss
        metrics["perplexity"] = math.exp(loss) if loss < 50 else float("inf")
    cuda_peak = _cuda_peak_mb()
    if cuda_peak is not None:
        metrics["peak_cuda_mb"] = cuda_peak
    return metrics, history


def log_callback() -> Any:
    """A trainer callback that sends the trainer's logs (loss, learning rate) to ``logging`` (``-v``)."""
    from transformers import TrainerCallback

    class LogToLogging(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            if logs:
                shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items()}
                log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)
            return control

    return LogToLogging()


def time_limit(minutes: float) -> Any:
    """A trainer callback that ends training before the step that would pass ``minutes``: it stops
    when the time left is shorter than the longest step so far (the first step always runs, so
    there is an adapter to save)."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.deadline = time.perf_counter() + minutes * 60
            self.step_started = time.perf_counter()
            self.longest = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.step_started = time.perf_counter()
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            now = time.perf_counter()
            self.longest = max(self.longest, now - self.step_started)
            if now + self.longest >= self.deadline:
                control.should_training_stop = True
            return control

    return TimeLimit()


def finish(result: RunResult, config: Any) -> RunResult:
    """Write ``config.yaml`` and ``result.json`` beside the weights."""
    result.output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, result.output_dir / "config.yaml")
    (result.output_dir / "result.json").write_text(
        json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def _cuda_peak_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def require(module: str, extra: str = "train") -> None:
    """Fail with the install hint when an optional training package is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise TrainingError(f"this recipe needs {module!r}: pip install 'rag-app[{extra}]'")


def count_trainable(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def causal_lm_trainer(
    args: TrainArgs, model: Any, tokenizer: Any, train: list[list[int]], validation: list[list[int]]
) -> Any:
    """``transformers.Trainer`` over token blocks with the causal-LM collator (labels = inputs,
    shifted in the model); used by pretraining from scratch and continued pretraining."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    return Trainer(
        model=model,
        args=TrainingArguments(**trainer_kwargs(args, has_validation=True)),
        train_dataset=Dataset.from_dict({"input_ids": train}),
        eval_dataset=Dataset.from_dict({"input_ids": validation}),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )


def adapter_path(ref: str, settings: Settings) -> tuple[Path, Any]:
    """An adapter given as a folder or a registry name: its folder and its registry record (or None)."""
    from finetune.registry import Registry

    folder = Path(ref).expanduser()
    if (folder / "adapter_config.json").is_file():
        return folder, None
    record = Registry.from_settings(settings).get(ref)
    if record is None:
        raise TrainingError(
            f"{ref!r} is neither an adapter folder (with adapter_config.json) nor a registered adapter"
        )
    return record.path, record


def check_adapter_base(ref: str, record: Any, folder: Path, base: Path) -> None:
    """Refuse an adapter trained on other base weights than ``base`` (it would load and mislead)."""
    from rag_app.models import weights_digest

    expected = record.base_hash if record is not None else _saved_base_hash(folder)
    if expected is not None and expected != weights_digest(base):
        raise TrainingError(
            f"adapter {ref} was trained on base weights {expected}, but {base} has {weights_digest(base)}: "
            "train it again on this base, or set model to the base it was trained on"
        )


def _saved_base_hash(folder: Path) -> str | None:
    path = folder / "rag-app-base.json"
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8")).get("base_hash") or "") or None


def save_base_record(weights: Path, model: str, base: Path) -> None:
    """Write which base the weights in ``weights`` were trained on (checked when they are loaded)."""
    from rag_app.models import weights_digest

    record = {"base_model": model, "base_hash": weights_digest(base)}
    (weights / "rag-app-base.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def register_run(
    *,
    name: str | None,
    output_dir: Path,
    weights: Path,
    model: str,
    base: Path,
    method: str,
    data: Path,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    settings: Settings,
) -> str:
    """Record an adapter in the registry with its base's hash and its data's hash; returns its name."""
    from finetune.data import file_sha256
    from finetune.registry import Registry
    from rag_app.models import weights_digest

    name = name or f"{output_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    Registry.from_settings(settings).register(
        name,
        weights,
        base_model=model,
        base_hash=weights_digest(base),
        method=method,
        data_hash=file_sha256(data)[:16],
        hyperparameters=hyperparameters,
        metrics=metrics,
    )
    return name


def model_bytes(folder: Path) -> int:
    """The size of a model folder's weights on disk (about its size in memory at that precision)."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) or sum(
        p.stat().st_size for p in folder.glob("*.bin")
    )


def lora_config(
    lora: LoraArgs, base: Path, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None
) -> Any:
    """The PEFT LoRA config for ``lora`` on the model in ``base`` (``top_layers`` made layer indices)."""
    from peft import LoraConfig, TaskType

    layers = None
    if lora.top_layers is not None:
        total = layer_count(base)
        layers = list(range(max(0, total - lora.top_layers), total))
    return LoraConfig(
        task_type=TaskType(task_type),
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        layers_to_transform=layers,
        modules_to_save=modules_to_save,
    )


def layer_count(base: Path) -> int:
    """The number of decoder layers of the model in ``base`` (from its config.json)."""
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    count = config.get("num_hidden_layers") or config.get("n_layer")
    if not count:
        raise TrainingError(f"{base}/config.json names no num_hidden_layers: cannot pick the top layers")
    return int(count)


def prepare(train: TrainArgs, settings: Settings | None) -> Settings:
    """What a TRL recipe does first: check TRL, PEFT and datasets are installed, load the settings,
    set the torch threads."""
    for module in ("trl", "peft", "datasets"):
        require(module)
    set_threads(train)
    return settings or Settings.load()


def rows_kept(trainer: Any) -> int:
    """The training rows the trainer kept (TRL drops the ones longer than ``max_length``)."""
    return len(trainer.train_dataset)
