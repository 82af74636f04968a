"""The data and supervised commands of ``rag-app finetune`` (mounted by :mod:`finetune.cli`):
grounded data, SFT, preference pairs, the packaged reader adapter. The training code is imported
inside each command; the preference-training commands are in :mod:`finetune.cli_align`."""

from __future__ import annotations

from pathlib import Path

import click

from finetune.cli_options import CONFIG_OPTION, OUT_OPTION, SAVE_OPTION, run_recipe, span
from rag_app.cli_common import cli_settings, print_json


@click.command("data")
@CONFIG_OPTION
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
@SAVE_OPTION
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

    recipe = build_recipe(
        GroundedDataRecipe,
        config_file,
        **{
            "source": source,
            "path": path,
            "questions": questions,
            "articles": span(articles),
            "distractors": distractors,
            "unanswerable_share": unanswerable_share,
            "validation_share": validation_share,
            "max_rows": max_rows,
            "out": out,
        },
    )
    if save_config is not None:
        run_recipe(recipe, save_config, lambda: None)
        return
    settings = cli_settings(ctx) if recipe.source == "index" else None
    print_json(write_dataset(recipe, settings)["rows"])


@click.command("sft")
@CONFIG_OPTION
@click.option("--method", type=click.Choice(["lora", "qlora", "prompt", "prefix", "full"]), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder written by `rag-app finetune data` (train.jsonl, validation.jsonl).",
)
@OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this many minutes.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None, help="train.learning_rate")
@click.option("--rank", type=int, default=None, help="lora.r")
@click.option("--name", default=None, help="Registry name of the adapter.")
@click.option(
    "--register/--no-register", default=None, help="Record the adapter in the registry (default on)."
)
@SAVE_OPTION
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
    run_recipe(recipe, save_config, lambda: sft(recipe, cli_settings(ctx)))


@click.command("preferences")
@CONFIG_OPTION
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
@SAVE_OPTION
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
            "articles": span(articles),
            "halueval": halueval,
            "halueval_pairs": span(halueval_pairs),
            "feedback": feedback,
            "model_negatives": model_negatives,
            "max_per_type": max_per_type,
            "out": out,
        },
    )
    if save_config is not None:
        run_recipe(recipe, save_config, lambda: None)
        return
    card = write_preferences(recipe, cli_settings(ctx))
    print_json({"rows": card["rows"], "per_type": card["per_type"], "groups": card["groups"]})


@click.command("reader")
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


COMMANDS = (finetune_data, finetune_sft, finetune_preferences, finetune_reader)
