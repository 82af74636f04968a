"""``rag-app models`` and ``config``: the models and the settings this invocation runs with."""

from __future__ import annotations

import click

from rag_app.cli_common import cli_settings, print_json

__all__ = ["config", "models"]


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The models in use, where they resolve to, and what is cached."""
    from rag_app.models import list_models

    rows = list_models(cli_settings(ctx))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.secho(f"{row.get('role')}: {row.get('name')}", bold=True)
        for key, value in row.items():
            if key not in ("role", "name"):
                click.echo(f"  {key:16} {value}")


@click.group()
def config() -> None:
    """Settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Effective settings and where each value came from."""
    rows = cli_settings(ctx).explain()
    if as_json:
        print_json({key: {"value": value, "origin": origin} for key, value, origin in rows})
        return
    width = max(len(key) for key, _, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:{width}}  {value!s:40}  {origin}")
