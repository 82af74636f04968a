"""The commands of ``rag-app adapters`` (mounted by :mod:`finetune.cli`): list, inspect, promote,
roll back, merge and export the adapters in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rag_app.cli_common import cli_settings, print_json

if TYPE_CHECKING:
    from finetune.registry import Registry


def _registry(ctx: click.Context) -> Registry:
    from finetune.registry import Registry

    return Registry.from_settings(cli_settings(ctx))


@click.command("ls")
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


@click.command("show")
@click.argument("name")
@click.pass_context
def adapters_show(ctx: click.Context, name: str) -> None:
    """Everything recorded about one adapter (JSON)."""
    print_json(_registry(ctx).require(name).to_dict())


@click.command("promote")
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


@click.command("rollback")
@click.pass_context
def adapters_rollback(ctx: click.Context) -> None:
    """Return to the adapter promoted before the current one (or to none)."""
    record = _registry(ctx).rollback()
    click.echo(f"promoted {record.name}" if record else "no adapter is promoted now")


@click.command("merge")
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


@click.command("export")
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


COMMANDS = (adapters_ls, adapters_show, adapters_promote, adapters_rollback, adapters_merge, adapters_export)
