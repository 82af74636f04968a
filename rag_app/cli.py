"""The ``rag-app`` command. Each command is a thin layer over the :class:`rag_app.RAG` facade."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rag_app.errors import RagAppError

F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context) -> Any:
    from rag_app.settings import Settings

    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = Settings.load(obj.get("config"))
    return obj["settings"]


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _open_rag(ctx: click.Context, index: Path) -> Any:
    from rag_app.rag import RAG

    return RAG.open(index, _settings(ctx))


class _Group(click.Group):
    """Turns our errors into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagAppError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


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


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("--prune", is_flag=True, help="Remove indexed documents whose files are gone.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.pass_context
def ingest(
    ctx: click.Context, paths: tuple[str, ...], index: Path, prune: bool, as_json: bool, progress: bool | None
) -> None:
    """Ingest files and folders into an index (created if needed).

    Unchanged files are skipped by content hash; changed files replace their chunks.

    \b
    Examples:
      rag-app ingest report.pdf notes/ --index my-index
      rag-app ingest docs/ --index my-index --prune --json
    """
    from rag_app.rag import RAG

    show = sys.stderr.isatty() and not as_json if progress is None else progress
    report = RAG(index, _settings(ctx)).ingest(list(paths), prune=prune, progress=show)
    if as_json:
        _print_json(report.to_dict())
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
        for item in report.files_failed + report.files_skipped:
            click.echo(f"  skipped {item['path']}: {item['error']}", err=True)
    if report.nothing_ingested:
        if not as_json:
            click.echo("error: nothing could be ingested from " + " ".join(paths), err=True)
        ctx.exit(1)


@cli.command()
@click.argument("query")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=None, help="Number of passages.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "bm25"]), default=None)
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
    hits = _open_rag(ctx, index).search(query, k, source=source, formats=formats, mode=mode, mmr=mmr)
    if as_json:
        _print_json([hit.to_dict() for hit in hits])
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


def _print_answer(answer: Any, *, streamed: bool = False) -> None:
    """The answer (unless already streamed), its grounding badge, flagged sentences and sources."""
    if not streamed:
        click.echo(answer.text)
    if answer.abstained:
        click.secho(f"(abstained: {answer.abstain_reason})", fg="yellow", err=True)
    grounding = answer.grounding
    if grounding is not None:
        color = "green" if grounding.score >= 0.7 else "yellow" if grounding.score >= 0.4 else "red"
        click.secho(f"grounding {grounding.score:.2f}", fg=color)
        for sentence in grounding.flagged:
            click.secho(f"  ! {sentence.text.strip()} ({sentence.reason}, {sentence.score:.2f})", fg="red")
    shown = [c for c in answer.citations if c.cited] or answer.citations
    title = "Sources:" if any(c.cited for c in answer.citations) else "Closest passages:"
    click.echo(title)
    for c in shown:
        where = c.source + (f", page {c.page}" if c.page else "") + f", chars {c.start}-{c.end}"
        text = " ".join(c.text.split())
        click.echo(f"  [{c.number}] {where}\n      {text[:200]}{' ...' if len(text) > 200 else ''}")


@cli.command()
@click.argument("question")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("-k", "k", type=click.IntRange(1, 100), default=None, help="Passages given to the generator.")
@click.option("--source", default=None, help="Only files whose path matches this glob.")
@click.option("--format", "formats", multiple=True, help="Only these formats; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the Answer object as JSON.")
@click.option("--stream/--no-stream", default=None, help="Print tokens as they come (default: on a terminal).")
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    index: Path,
    k: int | None,
    source: str | None,
    formats: tuple[str, ...],
    as_json: bool,
    stream: bool | None,
) -> None:
    """Answer QUESTION from the documents, citing numbered sources, or say they do not contain it.

    \b
    Examples:
      rag-app ask "what does the warranty cover?" --index my-index
      rag-app ask "when was it founded?" --index my-index --json
    """
    rag = _open_rag(ctx, index)
    if as_json:
        _print_json(rag.ask(question, k, source=source, formats=formats).to_dict())
        return
    if stream is None:
        stream = sys.stdout.isatty()
    if not stream:
        _print_answer(rag.ask(question, k, source=source, formats=formats))
        return
    answer_stream = rag.stream(question, k, source=source, formats=formats)
    for piece in answer_stream:
        click.echo(piece, nl=False)
    click.echo()
    _print_answer(answer_stream.answer, streamed=True)


@cli.command()
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("--conversation", default=None, help="Continue a stored conversation by id.")
@click.pass_context
def chat(ctx: click.Context, index: Path, conversation: str | None) -> None:
    """Chat with your documents in the terminal; follow-up questions use the conversation.

    Type /new for a new conversation, /exit (or Ctrl-D) to leave.

    \b
    Example:
      rag-app chat --index my-index
    """
    rag = _open_rag(ctx, index)
    session = rag.chat(conversation)
    click.echo(f"conversation {session.id} over {index} (/new, /exit)")
    while True:
        try:
            question = input("you> ")
        except EOFError:
            click.echo()
            return
        if question.strip() in ("/exit", "/quit"):
            return
        if question.strip() == "/new":
            session = rag.chat()
            click.echo(f"conversation {session.id}")
            continue
        if not question.strip():
            continue
        try:
            click.echo("rag> ", nl=False)
            for piece in session.stream(question):
                click.echo(piece, nl=False)
            click.echo()
            _print_answer(session.last_answer, streamed=True)
        except RagAppError as exc:  # one bad question must not end the chat
            click.echo(f"\nerror: {exc}", err=True)


@cli.group()
def guard() -> None:
    """The hallucination guard."""


@guard.command("train")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("../shared/data"),
    show_default=True,
    help="Folder with halueval-sum/, halueval-dialogue/ and scifact/.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def guard_train(ctx: click.Context, data: Path, out: Path, seed: int) -> None:
    """Train the guard on the first 80% of the labelled pairs; prints held-out metrics.

    \b
    Example (reproduces the packaged model):
      rag-app guard train --out rag_app/guard/guard-model.json
    """
    from rag_app.embeddings import create_embedder
    from rag_app.guard import train_guard

    metrics = train_guard(data, out, create_embedder(_settings(ctx)), seed=seed)
    _print_json(metrics)


@cli.command("serve-llm")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--tensor-parallel-size", type=int, default=1, show_default=True)
@click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True)
@click.option("--max-model-len", type=int, default=None)
@click.option("--print", "print_only", is_flag=True, help="Only print the vllm command.")
@click.pass_context
def serve_llm(
    ctx: click.Context,
    host: str,
    port: int,
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    print_only: bool,
) -> None:
    """Start vLLM (OpenAI-compatible) for the configured generator and registered adapters.

    Point the app at it with generator.backend = "openai" and
    generator.base_url = "http://HOST:PORT/v1".

    \b
    Example:
      rag-app serve-llm --port 8000 --print
    """
    import shlex

    from rag_app.serving import adapters_to_serve, run_vllm, vllm_command

    settings = _settings(ctx)
    cmd = vllm_command(
        settings,
        adapters_to_serve(settings),
        host=host,
        port=port,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
    )
    if print_only:
        click.echo(shlex.join(cmd))
        return
    run_vllm(cmd)


@cli.group()
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
        _print_json(stats)
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
        _print_json([asdict(row) for row in rows])
        return
    for row in rows:
        click.echo(f"{row.n_chunks:6} chunks  {row.format:9} {row.source}")


@index.command("delete")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("sources", nargs=-1, required=True)
@click.pass_context
def index_delete(ctx: click.Context, folder: Path, sources: tuple[str, ...]) -> None:
    """Remove documents (by their source path, as `index documents` lists them) from an index."""
    removed = _open_rag(ctx, folder).delete(list(sources))
    click.echo(f"removed {len(sources)} documents ({removed} chunks)")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The models in use, where they resolve to, and what is cached."""
    from rag_app.models import list_models

    rows = list_models(_settings(ctx))
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.secho(f"{row.get('role')}: {row.get('name')}", bold=True)
        for key, value in row.items():
            if key not in ("role", "name"):
                click.echo(f"  {key:16} {value}")


@cli.group()
def config() -> None:
    """Settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Effective settings and where each value came from."""
    rows = _settings(ctx).explain()
    if as_json:
        _print_json({key: {"value": value, "origin": origin} for key, value, origin in rows})
        return
    width = max(len(key) for key, _, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:{width}}  {value!s:40}  {origin}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="rag-app")


if __name__ == "__main__":
    main()
