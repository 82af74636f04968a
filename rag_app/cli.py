"""The ``rag-app`` command. Each command is a thin layer over the :class:`rag_app.RAG` facade.

This module holds the root group and mounts the commands, which live beside it by area:
:mod:`rag_app.cli_index` (``ingest``, ``search``, ``index``), :mod:`rag_app.cli_answer` (``ask``,
``chat``), :mod:`rag_app.cli_serve` (``ui``, ``serve-llm``, ``serve``) and :mod:`rag_app.cli_config`
(``models``, ``config``); each defines its commands unattached and this module adds them to
:func:`cli`. The groups of the other packages (``eval``, ``loop``, ``finetune``, ``adapters``,
``pretrain``, ``guard``) live in those packages and are mounted through :attr:`_Group.LAZY`,
imported only when invoked or listed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import click

from rag_app import cli_answer, cli_config, cli_index, cli_serve
from rag_app.cli_common import ErrorTranslatingGroup, cli_settings, print_json

__all__ = ["cli", "cli_settings", "main", "print_json"]


class _Group(ErrorTranslatingGroup):
    """The root group: our errors as one line on stderr, and the other packages' groups mounted lazily."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "adapters": ("finetune.cli", "adapters_group"),
        "eval": ("eval.cli", "eval_group"),
        "finetune": ("finetune.cli", "finetune_group"),
        "guard": ("finetune.guard.cli", "guard_group"),
        "loop": ("eval.loop_cli", "loop_group"),
        "pretrain": ("finetune.cli", "pretrain_group"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, attr = self.LAZY[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RAG_APP_CONFIG",
    help="TOML settings file (default: ./rag-app.toml when present).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="rag-app")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """Offline-first retrieval-augmented generation over your documents.

    \b
    Examples:
      rag-app ingest docs/ --index my-index
      rag-app search "how do I rotate the logs?" --index my-index -k 3
      rag-app index stats my-index
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.root.handlers:
        handler.setLevel(level)  # some libraries set their own loggers to DEBUG
    ctx.ensure_object(dict)["config"] = config


for _command in (
    cli_index.ingest,
    cli_index.search,
    cli_index.index,
    cli_answer.ask,
    cli_answer.chat,
    cli_serve.ui,
    cli_serve.serve_llm,
    cli_serve.serve,
    cli_config.models,
    cli_config.config,
):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="rag-app")


if __name__ == "__main__":
    main()
