"""The commands of ``rag-app pretrain`` (mounted by :mod:`finetune.cli`): causal LM and masked LM
from scratch, continued pretraining on an index. The training code is imported inside each command."""

from __future__ import annotations

from pathlib import Path

import click

from finetune.cli_options import CONFIG_OPTION, CORPUS_OPTION, OUT_OPTION, SAVE_OPTION, run_recipe
from rag_app.cli_common import cli_settings


@click.command("causal")
@CONFIG_OPTION
@CORPUS_OPTION
@OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--vocab-size", type=int, default=None)
@click.option("--layers", type=int, default=None, help="n_layer")
@click.option("--width", type=int, default=None, help="n_embd")
@SAVE_OPTION
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
    run_recipe(recipe, save_config, lambda: pretrain_causal(recipe))


@click.command("masked")
@CONFIG_OPTION
@CORPUS_OPTION
@OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@click.option("--nsp/--no-nsp", default=None, help="Also train next-sentence prediction.")
@SAVE_OPTION
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
    run_recipe(recipe, save_config, lambda: pretrain_masked(recipe))


@click.command("continued")
@CONFIG_OPTION
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option("--method", type=click.Choice(["lora", "full"]), default=None)
@OUT_OPTION
@click.option("--max-steps", type=int, default=None)
@SAVE_OPTION
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
    run_recipe(recipe, save_config, lambda: pretrain_continued(recipe, cli_settings(ctx)))


COMMANDS = (pretrain_causal_cmd, pretrain_masked_cmd, pretrain_continued_cmd)
