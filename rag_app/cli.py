"""The ``rag-app`` command. Each command is a thin layer over the :class:`rag_app.RAG` facade.

The groups of the other packages (``eval``, ``loop``, ``finetune``, ``adapters``, ``pretrain``,
``guard``) live there and are mounted through :attr:`_Group.LAZY`, imported only when invoked or listed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import click

from rag_app.cli_common import ErrorTranslatingGroup, cli_settings, open_rag, print_json
from rag_app.errors import RagAppError
from rag_app.ingest import LOCAL_RAY
from rag_app.search_options import MAX_K, RETRIEVAL_MODES

if TYPE_CHECKING:
    from rag_app.answer import Answer, Citation
    from rag_app.server.keys import KeyStore

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


@cli.command()
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


@cli.command()
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


def _print_answer(answer: Answer, *, streamed: bool = False, show_rejected: bool = False) -> None:
    """The answer (unless already streamed), why it was withheld, and its sources.

    A withheld draft is not printed (it was not supported by the documents) unless
    ``show_rejected``; the closest passages are shown whole enough to read an answer in them.
    """
    if not streamed:
        click.echo(answer.text)
    if answer.abstained:
        click.secho(answer.abstain_reason, fg="yellow", err=True)
        if show_rejected and answer.draft:
            click.secho("Withheld draft (not supported by the documents):", fg="red", err=True)
            click.secho(f"  {answer.draft}", fg="red", err=True)
        _print_passages("Closest passages:", answer.citations[:3], width=900)
        return
    grounding = answer.grounding
    if grounding is not None:
        if not answer.supported:
            click.secho("Not supported by the documents: check it against the sources.", fg="red")
        color = "green" if answer.supported else "red"
        click.secho(f"grounding {grounding.score:.2f}", fg=color)
        for sentence in grounding.flagged:
            click.secho(
                f"  ! {sentence.text.strip()} (not found in the sources, {sentence.score:.2f})", fg="red"
            )
    cited = [c for c in answer.citations if c.cited]
    spans = {s.source: s for s in (grounding.sentences if grounding else []) if s.source}
    click.echo("Sources:" if cited else "Closest passages:")
    for c in cited or answer.citations[:3]:
        where = c.source + (f", page {c.page}" if c.page else "")
        span = spans.get(c.number)
        if span is not None:
            click.echo(f"  [{c.number}] {where}, chars {span.source_start}-{span.source_end}")
            click.echo(f"      {_in_context(c, span.source_start, span.source_end)}")
        else:
            text = " ".join(c.text.split())
            click.echo(f"  [{c.number}] {where}, chars {c.start}-{c.end}")
            click.echo(f"      {text[:300]}{' ...' if len(text) > 300 else ''}")


def _in_context(citation: Citation, start: int, end: int, margin: int = 160) -> str:
    """The supporting span in its passage, with some text around it and the span in bold."""
    local_start, local_end = start - citation.start, end - citation.start
    text = citation.text
    before = " ".join(text[max(0, local_start - margin) : local_start].split(" "))
    after = text[local_end : local_end + margin]
    left = "... " if local_start > margin else ""
    right = " ..." if local_end + margin < len(text) else ""
    span = click.style(text[local_start:local_end], bold=True)
    return " ".join(f"{left}{before}{span}{after}{right}".split())


def _print_passages(title: str, citations: Sequence[Citation], *, width: int) -> None:
    if not citations:
        return
    click.echo(title)
    for c in citations:
        where = c.source + (f", page {c.page}" if c.page else "") + f", chars {c.start}-{c.end}"
        text = " ".join(c.text.split())
        click.echo(f"  [{c.number}] {where}\n      {text[:width]}{' ...' if len(text) > width else ''}")


class _Progress:
    """``searching ...``, ``writing ...``, ``checking ...`` on a terminal's stderr, each replacing the last.

    Off when stderr is not a terminal, so scripts and logs get only the answer and real errors.
    """

    LABELS: ClassVar[dict[str, str]] = {
        "searching": "searching the documents",
        "writing": "writing the answer",
        "checking": "checking it against the sources",
    }

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def __call__(self, step: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[K{self.LABELS.get(step, step)} ...", nl=False, err=True)
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
        self.shown = False


@cli.command()
@click.argument("question")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("-k", "k", type=click.IntRange(1, 100), default=None, help="Passages retrieved.")
@click.option("--source", default=None, help="Only files whose path matches this glob.")
@click.option("--format", "formats", multiple=True, help="Only these formats; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the Answer object as JSON (draft included).")
@click.option("--stream/--no-stream", default=None, help="Print text as it is checked (default: on a tty).")
@click.option("--show-rejected", is_flag=True, help="Also print a withheld draft, marked as unsupported.")
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
    show_rejected: bool,
) -> None:
    """Answer QUESTION from the documents, citing numbered sources, or say they do not contain it.

    \b
    Examples:
      rag-app ask "what does the warranty cover?" --index my-index
      rag-app ask "when was it founded?" --index my-index --json
      rag-app ask "who signed it?" --index my-index --show-rejected
    """
    rag = open_rag(ctx, index)
    if as_json:
        print_json(rag.ask(question, k, source=source, formats=formats).to_dict())
        return
    progress = _Progress(enabled=sys.stderr.isatty())
    if stream is None:
        stream = sys.stdout.isatty()
    if not stream:
        answer = rag.ask(question, k, source=source, formats=formats, on_step=progress)
        progress.clear()
        _print_answer(answer, show_rejected=show_rejected)
        return
    progress("searching")
    answer_stream = rag.stream(question, k, source=source, formats=formats)
    progress("writing")
    for piece in answer_stream:
        progress.clear()
        click.echo(piece, nl=False)
    progress.clear()
    click.echo()
    if answer_stream.answer is not None:  # always set once the stream is consumed
        _print_answer(answer_stream.answer, streamed=True, show_rejected=show_rejected)


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
    rag = open_rag(ctx, index)
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


def _streamlit_app_file() -> Path:
    """``streamlit_app.py``: installed beside the packages, or at the top of a source checkout."""
    import importlib.util

    spec = importlib.util.find_spec("streamlit_app")
    if spec is not None and spec.origin:
        return Path(spec.origin)
    return Path(__file__).resolve().parents[1] / "streamlit_app.py"


@cli.command()
@click.option(
    "--index", "index", type=click.Path(path_type=Path), default=None, help="Index folder to open first."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--print", "print_only", is_flag=True, help="Only print the streamlit command.")
@click.pass_context
def ui(ctx: click.Context, index: Path | None, host: str, port: int, print_only: bool) -> None:
    """Chat with your documents in the browser (the Streamlit app, headless, no usage stats).

    \b
    Examples:
      rag-app ui --index my-index
      rag-app ui --host 0.0.0.0 --port 8501
    """
    import os
    import shlex
    import subprocess

    from rag_app.errors import ConfigError

    cli_settings(ctx)  # a bad setting fails here with one line, not inside the browser
    app = _streamlit_app_file()
    if not app.is_file():
        raise ConfigError(f"the Streamlit app is missing: {app} (reinstall rag-app)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true"]
    cmd += ["--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    cmd += ["--client.toolbarMode", "minimal"]
    env = dict(os.environ)
    if ctx.obj.get("config") is not None:
        env["RAG_APP_CONFIG"] = str(Path(ctx.obj["config"]).resolve())
    if index is not None:
        env["RAG_APP_UI__INDEX"] = str(index.resolve())
    if print_only:
        click.echo(shlex.join(cmd))
        return
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the app needs Streamlit: pip install 'rag-app[ui]'")
    if os.name == "posix":  # become Streamlit: signals (Ctrl-C, a container's SIGTERM) reach it directly
        os.execve(cmd[0], cmd, env)
    ctx.exit(subprocess.run(cmd, env=env, check=False).returncode)


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

    settings = cli_settings(ctx)
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


@cli.group(invoke_without_command=True)
@click.option("--host", default=None, help="Interface to listen on (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: server.port).")
@click.option(
    "--indexes-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder whose subfolders are the served indexes (default: server.indexes_dir).",
)
@click.option("--default-index", default=None, help="Index used when a request names none.")
@click.option(
    "--index",
    "index",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Serve this index folder as the default index (instead of --indexes-dir/--default-index).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    indexes_dir: Path | None,
    default_index: str | None,
    index: Path | None,
) -> None:
    """Serve the REST API (OpenAI-compatible chat, search, ingest) over the indexes in a folder.

    Needs the server extra: pip install 'rag-app[server]'. Requests need an API key
    (see `rag-app serve keys add`) unless server.require_api_key is off. With --index DIR the
    server's folder is DIR's parent and DIR the default index: index folders beside DIR are
    reachable by name too.

    \b
    Examples:
      rag-app serve keys add --scope admin --name me
      rag-app serve --index my-index --port 8080
      rag-app serve --indexes-dir ./indexes --default-index docs --port 8080
      curl -H "Authorization: Bearer $KEY" localhost:8080/v1/models
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        from rag_app.server.run import serve as run_server
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is missing: pip install 'rag-app[server]'") from None
    settings = cli_settings(ctx)
    if index is not None:
        indexes_dir, default_index = _one_index(index, indexes_dir, default_index)
    overrides = {"indexes_dir": indexes_dir, "default_index": default_index}
    for key, value in overrides.items():
        if value is not None:
            setattr(settings.server, key, value)
    run_server(settings, host=host, port=port)


def _one_index(index: Path, indexes_dir: Path | None, default_index: str | None) -> tuple[Path, str]:
    """``serve --index DIR`` as the server's folder and default index: ``(DIR's parent, DIR's name)``."""
    from rag_app.server.runtime import INDEX_NAME
    from rag_app.store.index import IndexStore

    if indexes_dir is not None or default_index is not None:
        raise click.UsageError("--index names the one index to serve: drop --indexes-dir and --default-index")
    folder = index.resolve()
    if not INDEX_NAME.fullmatch(folder.name):
        raise click.BadParameter(
            f"the server names an index by its folder, and {folder.name!r} is not allowed "
            "(letters, digits, '.', '_' and '-', not first): rename the folder",
            param_hint="--index",
        )
    IndexStore.open(folder).close()  # a missing or broken index fails now, naming the ingest command
    return folder.parent, folder.name


@serve.group("keys")
def serve_keys() -> None:
    """API keys of the REST API (stored hashed in server.api_keys_file)."""


def _key_store(ctx: click.Context) -> KeyStore:
    from rag_app.server.keys import KeyStore

    settings = cli_settings(ctx)
    return KeyStore(settings.server.api_keys_file or settings.data_dir / "api-keys.json")


@serve_keys.command("add")
@click.option("--scope", type=click.Choice(["read", "admin"]), default="read", show_default=True)
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--rate-limit", type=click.IntRange(0), default=None, help="Requests a minute (0: unlimited).")
@click.pass_context
def serve_keys_add(
    ctx: click.Context, scope: Literal["read", "admin"], name: str, rate_limit: int | None
) -> None:
    """Create a key and print it once (only its hash is stored).

    \b
    Example:
      rag-app serve keys add --scope admin --name ci
    """
    store = _key_store(ctx)
    key, token = store.add(scope, name, rate_limit)
    click.echo(token)
    click.echo(f"key {key.id} ({key.scope}) added to {store.path}; it is not shown again", err=True)


@serve_keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def serve_keys_list(ctx: click.Context, as_json: bool) -> None:
    """The keys (id, name, scope, created), never their secrets."""
    rows = [key.public() for key in _key_store(ctx).list_keys()]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['scope']:5}  {row['created_at']}  {row['name']}")


@serve_keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def serve_keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Remove a key by id; requests with it fail at once."""
    if not _key_store(ctx).revoke(key_id):
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"revoked {key_id}")


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


@cli.command()
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


@cli.group()
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


def main() -> None:
    """Console entry point."""
    cli(prog_name="rag-app")


if __name__ == "__main__":
    main()
