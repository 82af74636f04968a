"""The options and helpers the ``pretrain`` and ``finetune`` commands share (:mod:`finetune.cli`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rag_app.cli_common import print_json

if TYPE_CHECKING:
    from pydantic import BaseModel

CONFIG_OPTION = click.option(
    "--config-file",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Recipe YAML (see finetune/configs/); flags override its values.",
)
CORPUS_OPTION = click.option(
    "--corpus", multiple=True, type=click.Path(exists=True, path_type=Path), help="Text files/folders."
)
OUT_OPTION = click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
SAVE_OPTION = click.option(
    "--save-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the effective recipe as YAML and exit without training.",
)


def run_recipe(recipe: BaseModel, save_config: Path | None, run: Callable[[], Any]) -> None:
    """Write the effective recipe (``--save-config``) or run it and print its result as JSON."""
    from finetune.config import save_config as save

    if save_config is not None:
        click.echo(f"wrote {save(recipe, save_config)}")
        return
    print_json(run().to_dict())


def span(text: str | None) -> list[int] | None:
    """``"1-16"`` -> ``[1, 16]``; ``"3"`` -> ``[3, 3]``."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        return [int(first), int(last or first)]
    except ValueError:
        raise click.BadParameter(f"expected a range like 1-16, got {text!r}") from None
