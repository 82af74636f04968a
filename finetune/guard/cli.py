"""``rag-app guard``: train the hallucination guard.

The main ``rag-app`` group loads this module only when ``guard`` is invoked or listed; the
training code (scikit-learn, the embedder) is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from rag_app.cli_common import cli_settings, print_json


@click.group("guard")
def guard_group() -> None:
    """The hallucination guard."""


@guard_group.command("train")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder with halueval-sum/, halueval-dialogue/, halueval-qa/ and scifact/.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file to write."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def guard_train(ctx: click.Context, data: Path, out: Path, seed: int) -> None:
    """Train the guard on the first 80% of the labelled pairs; prints held-out metrics.

    \b
    Example (reproduces the packaged model from a source checkout):
      rag-app guard train --data ../shared/data --out rag_app/guard/guard-model.json
    """
    from finetune.guard.train import train_guard
    from rag_app.embeddings import create_embedder

    settings = cli_settings(ctx)
    metrics = train_guard(data, out, create_embedder(settings), seed=seed, cache_dir=settings.cache_dir)
    print_json(metrics)
