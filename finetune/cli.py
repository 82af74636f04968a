"""``rag-app pretrain``, ``rag-app finetune`` and ``rag-app adapters``: training and the adapter registry.

The main ``rag-app`` group loads this module only when one of these groups is invoked or listed;
the training code itself (torch, TRL, PEFT) is imported inside each command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rag_app.cli_common import cli_settings, print_json

if TYPE_CHECKING:
    from pydantic import BaseModel

    from finetune.registry import Registry

_CONFIG_OPTION = click.option(
    "--config-file",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Recipe YAML (see finetune/configs/); flags override its values.",
)
_CORPUS_OPTION = click.option(
    "--corpus", multiple=True, type=click.Path(exists=True, path_type=Path), help="Text files/folders."
)
_OUT_OPTION = click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
_SAVE_OPTION = click.option(
    "--save-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the effective recipe as YAML and exit without training.",
)


def _run_recipe(recipe: BaseModel, save_config: Path | None, run: Callable[[], Any]) -> None:
    """Write the effective recipe (``--save-config``) or run it and print its result as JSON."""
    from finetune.config import save_config as save

    if save_config is not None:
        click.echo(f"wrote {save(recipe, save_config)}")
        return
    print_json(run().to_dict())


@click.group("pretrain")
def pretrain_group() -> None:
    """Pretraining: causal LM or masked LM from scratch, continued pretraining on an index."""


@pretrain_group.command("causal")
@_CONFIG_OPTION
@_CORPUS_OPTION
@_OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--vocab-size", type=int, default=None)
@click.option("--layers", type=int, default=None, help="n_layer")
@click.option("--width", type=int, default=None, help="n_embd")
@_SAVE_OPTION
def pretrain_causal_cmd(
    config_file: Path | None,
    corpus: tuple[Path, ...],
    out: Path | None,
    max_steps: int | None,
    vocab_size: int | None,
    layers: int | None,
    width: int | None,
    save_config: Path | None,
) -> None:
    """Train a BPE tokenizer and a small Llama-style decoder from scratch; prints loss and perplexity.

    \b
    Examples:
      rag-app pretrain causal --corpus notes/ --out runs/tiny-llama --max-steps 200
      rag-app pretrain causal --config-file finetune/configs/pretrain-causal.yaml
    """
    from finetune.config import CausalPretrainRecipe, build_recipe
    from finetune.pretrain_causal import pretrain_causal

    recipe = build_recipe(
        CausalPretrainRecipe,
        config_file,
        **{
            "corpus": list(corpus) or None,
            "train.output_dir": out,
            "train.max_steps": max_steps,
            "vocab_size": vocab_size,
            "n_layer": layers,
            "n_embd": width,
        },
    )
    _run_recipe(recipe, save_config, lambda: pretrain_causal(recipe))


@pretrain_group.command("masked")
@_CONFIG_OPTION
@_CORPUS_OPTION
@_OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--nsp/--no-nsp", default=None, help="Also train next-sentence prediction.")
@_SAVE_OPTION
def pretrain_masked_cmd(
    config_file: Path | None,
    corpus: tuple[Path, ...],
    out: Path | None,
    max_steps: int | None,
    nsp: bool | None,
    save_config: Path | None,
) -> None:
    """Train a WordPiece tokenizer and a small BERT-style encoder (masked LM, optional NSP).

    \b
    Example:
      rag-app pretrain masked --corpus notes/ --out runs/tiny-bert --nsp
    """
    from finetune.config import MaskedPretrainRecipe, build_recipe
    from finetune.pretrain_masked import pretrain_masked

    recipe = build_recipe(
        MaskedPretrainRecipe,
        config_file,
        **{"corpus": list(corpus) or None, "train.output_dir": out, "train.max_steps": max_steps, "nsp": nsp},
    )
    _run_recipe(recipe, save_config, lambda: pretrain_masked(recipe))


@pretrain_group.command("continued")
@_CONFIG_OPTION
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option("--method", type=click.Choice(["lora", "full"]), default=None)
@_OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@_SAVE_OPTION
@click.pass_context
def pretrain_continued_cmd(
    ctx: click.Context,
    config_file: Path | None,
    index_dir: Path | None,
    model: str | None,
    method: str | None,
    out: Path | None,
    max_steps: int | None,
    save_config: Path | None,
) -> None:
    """Continue pretraining the generator on an index's chunks (domain adaptation); a LoRA
    adapter is registered in the adapter registry.

    \b
    Example:
      rag-app pretrain continued --index my-index --out runs/cpt --max-steps 100
    """
    from finetune.config import ContinuedPretrainRecipe, build_recipe
    from finetune.pretrain_continued import pretrain_continued

    recipe = build_recipe(
        ContinuedPretrainRecipe,
        config_file,
        **{
            "index": index_dir,
            "model": model,
            "method": method,
            "train.output_dir": out,
            "train.max_steps": max_steps,
        },
    )
    _run_recipe(recipe, save_config, lambda: pretrain_continued(recipe, cli_settings(ctx)))


@click.group("finetune")
def finetune_group() -> None:
    """Fine-tuning: grounded data, SFT (LoRA, QLoRA, prompt, prefix, full), preference pairs, reward
    model, DPO and RLHF."""


@finetune_group.command("data")
@_CONFIG_OPTION
@click.option("--source", type=click.Choice(["squad", "index", "jsonl"]), default=None)
@click.option(
    "--path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="squad-dev folder, index folder, or question/context/answer JSONL.",
)
@click.option(
    "--questions",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --source index: JSONL of {question, answer}.",
)
@click.option("--articles", default=None, help="With --source squad: article range, e.g. 1-16.")
@click.option("--distractors", type=int, default=None)
@click.option("--unanswerable-share", type=float, default=None)
@click.option("--validation-share", type=float, default=None)
@click.option("--max-rows", type=int, default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@_SAVE_OPTION
@click.pass_context
def finetune_data(
    ctx: click.Context,
    config_file: Path | None,
    source: str | None,
    path: Path | None,
    questions: Path | None,
    articles: str | None,
    distractors: int | None,
    unanswerable_share: float | None,
    validation_share: float | None,
    max_rows: int | None,
    out: Path | None,
    save_config: Path | None,
) -> None:
    """Build RAFT-style grounded chat rows (deduplicated, split, with a data card).

    \b
    Examples:
      rag-app finetune data --source squad --path ../shared/data/squad-dev --articles 1-16 --out data/
      rag-app finetune data --source jsonl --path failures.jsonl --out data/
      rag-app finetune data --source index --path my-index --questions qa.jsonl --out data/
    """
    from finetune.config import GroundedDataRecipe, build_recipe
    from finetune.data import write_dataset

    span = None
    if articles:
        first, _, last = articles.partition("-")
        span = [int(first), int(last or first)]
    recipe = build_recipe(
        GroundedDataRecipe,
        config_file,
        **{
            "source": source,
            "path": path,
            "questions": questions,
            "articles": span,
            "distractors": distractors,
            "unanswerable_share": unanswerable_share,
            "validation_share": validation_share,
            "max_rows": max_rows,
            "out": out,
        },
    )
    if save_config is not None:
        _run_recipe(recipe, save_config, lambda: None)
        return
    settings = cli_settings(ctx) if recipe.source == "index" else None
    print_json(write_dataset(recipe, settings)["rows"])


@finetune_group.command("sft")
@_CONFIG_OPTION
@click.option("--method", type=click.Choice(["lora", "qlora", "prompt", "prefix", "full"]), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder written by `rag-app finetune data` (train.jsonl, validation.jsonl).",
)
@_OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this many minutes.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None, help="train.learning_rate")
@click.option("--rank", type=int, default=None, help="lora.r")
@click.option("--name", default=None, help="Registry name of the adapter.")
@click.option(
    "--register/--no-register", default=None, help="Record the adapter in the registry (default on)."
)
@_SAVE_OPTION
@click.pass_context
def finetune_sft(
    ctx: click.Context,
    config_file: Path | None,
    method: str | None,
    model: str | None,
    data_dir: Path | None,
    out: Path | None,
    max_steps: int | None,
    max_minutes: float | None,
    batch_size: int | None,
    lr: float | None,
    rank: int | None,
    name: str | None,
    register: bool | None,
    save_config: Path | None,
) -> None:
    """Supervised fine-tuning with TRL + PEFT; the adapter is registered (promote it to use it).

    QLoRA needs a CUDA GPU (bitsandbytes); on CPU it stops at once and names LoRA.

    \b
    Examples:
      rag-app finetune sft --method lora --data data/ --out runs/lora --max-steps 100
      rag-app finetune sft --config-file finetune/configs/sft-lora.yaml --max-minutes 20
      rag-app adapters promote lora-20260101-120000
    """
    from finetune.config import SFTRecipe, build_recipe
    from finetune.sft import check_method, sft

    data = (
        {"data.train": data_dir / "train.jsonl", "data.validation": data_dir / "validation.jsonl"}
        if data_dir
        else {}
    )
    recipe = build_recipe(
        SFTRecipe,
        config_file,
        **{
            "method": method,
            "model": model,
            "train.output_dir": out,
            "train.max_steps": max_steps,
            "train.max_minutes": max_minutes,
            "train.batch_size": batch_size,
            "train.learning_rate": lr,
            "lora.r": rank,
            "name": name,
            "register_adapter": register,
            **data,
        },
    )
    if save_config is None:
        check_method(recipe.method)  # before any model loads
    _run_recipe(recipe, save_config, lambda: sft(recipe, cli_settings(ctx)))


@finetune_group.command("preferences")
@_CONFIG_OPTION
@click.option("--squad", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None)
@click.option("--articles", default=None, help="SQuAD article range, e.g. 1-16.")
@click.option(
    "--halueval",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="HaluEval QA pairs (qa_pairs.jsonl).",
)
@click.option("--halueval-pairs", default=None, help="pair_id range, e.g. 0-3999.")
@click.option(
    "--feedback",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A data folder with the app's feedback.sqlite.",
)
@click.option(
    "--model-negatives",
    type=int,
    default=None,
    help="Prompts to ask the generator for its own wrong answers.",
)
@click.option("--max-per-type", type=int, default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@_SAVE_OPTION
@click.pass_context
def finetune_preferences(
    ctx: click.Context,
    config_file: Path | None,
    squad: Path | None,
    articles: str | None,
    halueval: Path | None,
    halueval_pairs: str | None,
    feedback: Path | None,
    model_negatives: int | None,
    max_per_type: int | None,
    out: Path | None,
    save_config: Path | None,
) -> None:
    """Build preference pairs (prompt, chosen, rejected) for the reward model, DPO and RLHF.

    Contrastive pairs from SQuAD-style data with rule-made hard negatives (a distractor's sentence,
    a swapped name or number, a wrong citation, a false abstention, an answer where the sources
    lack it) and the generator's own wrong answers; HaluEval QA pairs; app feedback.

    \b
    Examples:
      rag-app finetune preferences --articles 1-16 --halueval-pairs 0-3999 --out data/prefs
      rag-app finetune preferences --config-file finetune/configs/preferences.yaml --model-negatives 200
      rag-app finetune preferences --feedback ~/.local/share/rag-app --out data/feedback-prefs
    """
    from finetune.config import PreferenceRecipe, build_recipe
    from finetune.preferences import write_preferences

    recipe = build_recipe(
        PreferenceRecipe,
        config_file,
        **{
            "squad": squad,
            "articles": _span(articles),
            "halueval": halueval,
            "halueval_pairs": _span(halueval_pairs),
            "feedback": feedback,
            "model_negatives": model_negatives,
            "max_per_type": max_per_type,
            "out": out,
        },
    )
    if save_config is not None:
        _run_recipe(recipe, save_config, lambda: None)
        return
    card = write_preferences(recipe, cli_settings(ctx))
    print_json({"rows": card["rows"], "per_type": card["per_type"], "groups": card["groups"]})


def _span(text: str | None) -> list[int] | None:
    """``"1-16"`` -> ``[1, 16]``; ``"3"`` -> ``[3, 3]``."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        return [int(first), int(last or first)]
    except ValueError:
        raise click.BadParameter(f"expected a range like 1-16, got {text!r}") from None


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
            _CONFIG_OPTION,
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
            _SAVE_OPTION,
        ]
    ):
        function = option(function)
    return function


@finetune_group.command("reward")
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
    _run_recipe(recipe, save_config, lambda: train_reward(recipe, cli_settings(ctx)))


@finetune_group.command("dpo")
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
    _run_recipe(recipe, save_config, lambda: dpo(recipe, cli_settings(ctx)))


@finetune_group.command("rlhf")
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
    _run_recipe(recipe, save_config, lambda: rlhf(recipe, cli_settings(ctx)))


@finetune_group.command("reader")
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="HaluEval QA pairs (qa_pairs.jsonl); pairs 0-3,999 train, 4,000-4,999 validate.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/reader"), show_default=True)
@click.option("--answer-rows", type=int, default=600, show_default=True)
@click.option(
    "--top-layers", type=int, default=8, show_default=True, help="LoRA on the last N decoder layers."
)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this many minutes.")
@click.option("--threads", type=int, default=None, help="Torch threads (default: one per core).")
@click.pass_context
def finetune_reader(
    ctx: click.Context,
    data_file: Path,
    out: Path,
    answer_rows: int,
    top_layers: int,
    max_minutes: float | None,
    threads: int | None,
) -> None:
    """Train the reader adapter of the packaged 0.5B generator (what rag-app ships in rag_app/adapters).

    Short cited answers, the abstention sentence, and the verifier's yes/no, from HaluEval QA only.
    About an hour on two CPU cores.

    \b
    Example (reproduces the packaged adapter):
      rag-app finetune reader --data ../shared/data/halueval-qa/qa_pairs.jsonl --out runs/reader
    """
    from finetune.reader import ReaderRecipe, train_reader
    from finetune.reader_data import ReaderMix

    share = max(1, answer_rows // 4)
    recipe = ReaderRecipe(
        data=data_file,
        out=out,
        mix=ReaderMix(answer_rows, share, share, share, sources=3),
        top_layers=top_layers,
        max_minutes=max_minutes,
        threads=threads,
    )
    card = train_reader(recipe, cli_settings(ctx))
    print_json({k: v for k, v in card.items() if k != "data"})


@click.group("adapters")
def adapters_group() -> None:
    """The adapter registry: list, inspect, promote, roll back, merge."""


def _registry(ctx: click.Context) -> Registry:
    from finetune.registry import Registry

    return Registry.from_settings(cli_settings(ctx))


@adapters_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def adapters_ls(ctx: click.Context, as_json: bool) -> None:
    """List registered adapters, newest first; * marks the promoted one."""
    records = _registry(ctx).records()
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no adapters registered (train one with `rag-app finetune sft`)")
    for r in records:
        loss = r.metrics.get("eval_loss")
        shown = f"eval_loss {loss:.3f}" if isinstance(loss, int | float) else ""
        click.echo(
            f"{'*' if r.promoted else ' '} {r.name}  {r.method}  base {r.base_model}  {r.created_at}  {shown}"
        )


@adapters_group.command("show")
@click.argument("name")
@click.pass_context
def adapters_show(ctx: click.Context, name: str) -> None:
    """Everything recorded about one adapter (JSON)."""
    print_json(_registry(ctx).require(name).to_dict())


@adapters_group.command("promote")
@click.argument("name")
@click.pass_context
def adapters_promote(ctx: click.Context, name: str) -> None:
    """Make NAME the adapter the app loads (generator.adapter "auto", the default) from its next start."""
    settings = cli_settings(ctx)
    record = _registry(ctx).promote(name)
    click.echo(f"promoted {record.name} ({record.path})")
    if settings.generator.adapter not in ("auto", "promoted"):
        click.echo(
            f"note: generator.adapter is {settings.generator.adapter!r} here, so this app keeps loading "
            "that; unset it (or set 'auto') to use the promoted adapter"
        )


@adapters_group.command("rollback")
@click.pass_context
def adapters_rollback(ctx: click.Context) -> None:
    """Return to the adapter promoted before the current one (or to none)."""
    record = _registry(ctx).rollback()
    click.echo(f"promoted {record.name}" if record else "no adapter is promoted now")


@adapters_group.command("merge")
@click.argument("name")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Model folder to write."
)
@click.pass_context
def adapters_merge(ctx: click.Context, name: str, out: Path) -> None:
    """Merge a LoRA adapter (registry name or folder) into its base: a full model folder.

    \b
    Example:
      rag-app adapters merge lora-20260101-120000 --out models/smollm2-squad
      RAG_APP_GENERATOR__MODEL=models/smollm2-squad rag-app ask "..." --index my-index
    """
    from finetune.registry import merge

    click.echo(f"wrote {merge(cli_settings(ctx), name, out)}")


@adapters_group.command("export")
@click.argument("name")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write."
)
@click.option("--max-mb", type=float, default=20.0, show_default=True, help="Refuse larger weights.")
@click.pass_context
def adapters_export(ctx: click.Context, name: str, out: Path, max_mb: float) -> None:
    """A registered adapter as a self-contained folder: bfloat16 LoRA weights, lineage.json (every
    loop iteration behind it) and data_card.json; point generator.adapter at it anywhere.

    \b
    Example:
      rag-app adapters export loop-sft-20261203-1240 --out shipped/my-adapter
    """
    from finetune.export import export_adapter
    from finetune.registry import Registry

    print_json(export_adapter(Registry.from_settings(cli_settings(ctx)), name, out, max_mb=max_mb))
