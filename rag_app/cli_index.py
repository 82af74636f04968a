"""``rag-app ingest``, ``search`` and ``index``: put documents into an index folder and look inside it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rag_app.cli_common import cli_settings, open_rag, print_json
from rag_app.ingest import LOCAL_RAY
from rag_app.search_options import MAX_K, RETRIEVAL_MODES

__all__ = ["index", "ingest", "search"]


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("--prune", is_flag=True, help="Remove indexed documents whose files are gone.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option(
    "--redact-pii",
    is_flag=True,
    help="Replace e-mails, phones, IBANs, cards, IPs and names with placeholders (index.redact_pii).",
)
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for another writer of the index to finish (default: index.lock_wait_s).",
)
@click.option(
    "--ray",
    "ray",
    is_flag=False,
    flag_value=LOCAL_RAY,
    default=None,
    metavar="[ADDRESS]",
    help="Load, chunk and embed on Ray (extra [ray]): a local Ray without ADDRESS, else that cluster.",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[str, ...],
    index: Path,
    prune: bool,
    as_json: bool,
    progress: bool | None,
    redact_pii: bool,
    wait: float | None,
    ray: str | None,
) -> None:
    """Ingest files and folders into an index (created if needed).

    Unchanged files are skipped by content hash; changed files replace their chunks. Only one
    writer at a time: a second one fails at once, unless --wait lets it queue.

    \b
    Examples:
      rag-app ingest report.pdf notes/ --index my-index
      rag-app ingest docs/ --index my-index --prune --json
      rag-app ingest docs/ --index my-index --wait 600   # from cron, beside manual ingests
      rag-app ingest mail/ --index private --redact-pii  # <EMAIL_1>, <PERSON_2> stored instead
      rag-app ingest docs/ --index my-index --ray         # or --ray ray://head:10001 (after the paths)
    """
    from rag_app.ingest import installed_ingester
    from rag_app.rag import RAG

    show = sys.stderr.isatty() and not as_json if progress is None else progress
    settings = cli_settings(ctx)
    if redact_pii:
        settings.index.redact_pii = True
    ingester = installed_ingester(ray=ray) if ray is not None else None
    report = RAG(index, settings, ingester=ingester).ingest(
        list(paths), prune=prune, progress=show, wait=wait
    )
    if as_json:
        print_json(report.to_dict())
    else:
        click.echo(
            f"{report.files_seen} files seen: {report.files_ingested} ingested, "
            f"{report.files_unchanged} unchanged, {len(report.files_failed)} failed"
            + (f", {report.files_removed} removed" if report.files_removed else "")
        )
        click.echo(
            f"{report.chunks_added} chunks added ({report.chunks_embedded} embedded, "
            f"{report.chunks_reused} reused), {report.chunks_removed} removed "
            f"in {report.seconds:.1f} s -> {index}"
        )
        if report.pii_redacted:
            found = ", ".join(f"{n} {kind}" for kind, n in sorted(report.pii_redacted.items()))
            click.echo(f"PII redacted: {found}")
        for item in report.files_failed + report.files_skipped:
            click.echo(f"  skipped {item['path']}: {item['error']}", err=True)
    if report.nothing_ingested:
        if not as_json:
            click.echo("error: nothing could be ingested from " + " ".join(paths), err=True)
        ctx.exit(1)


@click.command()
@click.argument("query")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=None, help="Number of passages.")
@click.option("--mode", type=click.Choice(RETRIEVAL_MODES), default=None)
@click.option("--source", default=None, help="Only files whose path matches this glob.")
@click.option("--format", "formats", multiple=True, help="Only these formats (pdf, html, ...); repeatable.")
@click.option("--mmr/--no-mmr", default=None, help="Diversify results (maximal marginal relevance).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of hits.")
@click.pass_context
def search(
    ctx: click.Context,
    query: str,
    index: Path,
    k: int | None,
    mode: str | None,
    source: str | None,
    formats: tuple[str, ...],
    mmr: bool | None,
    as_json: bool,
) -> None:
    """Show the passages of an index that best match QUERY.

    \b
    Examples:
      rag-app search "vacuum full locks" --index pg-docs -k 3
      rag-app search "install" --index my-index --format pdf --json
    """
    hits = open_rag(ctx, index).search(query, k, source=source, formats=formats, mode=mode, mmr=mmr)
    if as_json:
        print_json([hit.to_dict() for hit in hits])
        return
    if not hits:
        click.echo("no matching passages")
    for rank, hit in enumerate(hits, start=1):
        where = hit.source + (f", page {hit.page}" if hit.page else "") + f", chars {hit.start}-{hit.end}"
        heading = " > ".join(hit.heading_path)
        click.secho(f"[{rank}] {hit.score:.3f}  {where}", bold=True)
        if heading:
            click.echo(f"    {heading}")
        text = " ".join(hit.text.split())
        click.echo("    " + (text[:400] + " ..." if len(text) > 400 else text))


@click.group()
def index() -> None:
    """Inspect index folders."""


@index.command("stats")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def index_stats(folder: Path, as_json: bool) -> None:
    """Counts, sizes and build settings of an index.

    \b
    Example:
      rag-app index stats my-index --json
    """
    from rag_app.store.index import IndexStore

    stats = IndexStore.open(folder).stats()
    if as_json:
        print_json(stats)
        return
    for key, value in stats.items():
        click.echo(f"{key:20} {value}")


@index.command("documents")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def index_documents(folder: Path, as_json: bool) -> None:
    """List the documents of an index with their chunk counts."""
    from dataclasses import asdict

    from rag_app.store.index import IndexStore

    rows = IndexStore.open(folder).docstore.documents()
    if as_json:
        print_json([asdict(row) for row in rows])
        return
    for row in rows:
        click.echo(f"{row.n_chunks:6} chunks  {row.format:9} {row.source}")


@index.command("delete")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("sources", nargs=-1, required=True)
@click.pass_context
def index_delete(ctx: click.Context, folder: Path, sources: tuple[str, ...]) -> None:
    """Remove documents (by their source path, as `index documents` lists them) from an index."""
    removed = open_rag(ctx, folder).delete(list(sources))
    click.echo(f"removed {len(sources)} documents ({removed} chunks)")
