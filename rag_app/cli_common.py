"""What every package's ``rag-app`` commands share: settings, JSON output, error translation.

The root group (:mod:`rag_app.cli`) and the groups that live in the other packages
(``eval.cli``, ``eval.loop_cli``, ``finetune.cli``) import this module, never each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rag_app.errors import RagAppError

if TYPE_CHECKING:
    from rag_app.rag import RAG
    from rag_app.settings import Settings


def cli_settings(ctx: click.Context) -> Settings:
    """The settings of this invocation (``--config``, environment), loaded once per command."""
    from rag_app.settings import Settings

    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = Settings.load(obj.get("config"))
    settings: Settings = obj["settings"]
    return settings


def open_rag(ctx: click.Context, index: Path) -> RAG:
    """The :class:`RAG` facade over the index folder ``index`` with this invocation's settings."""
    from rag_app.rag import RAG

    return RAG.open(index, cli_settings(ctx))


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (``--json`` output)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class ErrorTranslatingGroup(click.Group):
    """A group whose commands' :class:`RagAppError` becomes one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagAppError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
