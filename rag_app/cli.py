"""The ``rag-app`` command. Each command is a thin layer over the :class:`rag_app.RAG` facade."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from rag_app.errors import RagAppError

F = TypeVar("F", bound=Callable[..., Any])


def cli_settings(ctx: click.Context) -> Any:
    """The settings of this invocation (``--config``, environment), loaded once per command."""
    from rag_app.settings import Settings

    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = Settings.load(obj.get("config"))
    return obj["settings"]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (``--json`` output)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _open_rag(ctx: click.Context, index: Path) -> Any:
    from rag_app.rag import RAG

    return RAG.open(index, cli_settings(ctx))


class _Group(click.Group):
    """Turns our errors into one line on stderr and the error's exit code.

    Groups that live in the other packages (``eval``) load only when invoked.
    """

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "eval": ("eval.cli", "eval_group"),
        "guard": ("finetune.guard.cli", "guard_group"),
        "loop": ("eval.loop_cli", "loop_group"),
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
    """
    from rag_app.rag import RAG

    show = sys.stderr.isatty() and not as_json if progress is None else progress
    settings = cli_settings(ctx)
    if redact_pii:
        settings.index.redact_pii = True
    report = RAG(index, settings).ingest(list(paths), prune=prune, progress=show, wait=wait)
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


def _print_answer(answer: Any, *, streamed: bool = False, show_rejected: bool = False) -> None:
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


def _in_context(citation: Any, start: int, end: int, margin: int = 160) -> str:
    """The supporting span in its passage, with some text around it and the span in bold."""
    local_start, local_end = start - citation.start, end - citation.start
    text = citation.text
    before = " ".join(text[max(0, local_start - margin) : local_start].split(" "))
    after = text[local_end : local_end + margin]
    left = "... " if local_start > margin else ""
    right = " ..." if local_end + margin < len(text) else ""
    span = click.style(text[local_start:local_end], bold=True)
    return " ".join(f"{left}{before}{span}{after}{right}".split())


def _print_passages(title: str, citations: Any, *, width: int) -> None:
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
    rag = _open_rag(ctx, index)
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
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    indexes_dir: Path | None,
    default_index: str | None,
) -> None:
    """Serve the REST API (OpenAI-compatible chat, search, ingest) over the indexes in a folder.

    Needs the server extra: pip install 'rag-app[server]'. Requests need an API key
    (see `rag-app serve keys add`) unless server.require_api_key is off.

    \b
    Examples:
      rag-app serve keys add --scope admin --name me
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
    overrides = {"indexes_dir": indexes_dir, "default_index": default_index}
    for key, value in overrides.items():
        if value is not None:
            setattr(settings.server, key, value)
    run_server(settings, host=host, port=port)


@serve.group("keys")
def serve_keys() -> None:
    """API keys of the REST API (stored hashed in server.api_keys_file)."""


def _key_store(ctx: click.Context) -> Any:
    from rag_app.server.keys import KeyStore

    settings = cli_settings(ctx)
    return KeyStore(settings.server.api_keys_file or settings.data_dir / "api-keys.json")


@serve_keys.command("add")
@click.option("--scope", type=click.Choice(["read", "admin"]), default="read", show_default=True)
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--rate-limit", type=click.IntRange(0), default=None, help="Requests a minute (0: unlimited).")
@click.pass_context
def serve_keys_add(ctx: click.Context, scope: str, name: str, rate_limit: int | None) -> None:
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


# -- training: pretraining, fine-tuning, the adapter registry (the finetune package, imported lazily) --
_CONFIG_OPTION = click.option(
    "--config-file",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Recipe YAML (see finetune/configs/); flags override its values.",
)
_SAVE_OPTION = click.option(
    "--save-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the effective recipe as YAML and exit without training.",
)


def _run_recipe(recipe: Any, save_config: Path | None, run: Callable[[], Any]) -> None:
    from finetune.config import save_config as save

    if save_config is not None:
        click.echo(f"wrote {save(recipe, save_config)}")
        return
    print_json(run().to_dict())


@cli.group()
def pretrain() -> None:
    """Pretraining: causal LM or masked LM from scratch, continued pretraining on an index."""


@pretrain.command("causal")
@_CONFIG_OPTION
@click.option(
    "--corpus", multiple=True, type=click.Path(exists=True, path_type=Path), help="Text files/folders."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
@click.option("--max-steps", type=int, default=None)
@click.option("--vocab-size", type=int, default=None)
@click.option("--layers", type=int, default=None, help="n_layer")
@click.option("--width", type=int, default=None, help="n_embd")
@_SAVE_OPTION
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
    _run_recipe(recipe, save_config, lambda: pretrain_causal(recipe))


@pretrain.command("masked")
@_CONFIG_OPTION
@click.option(
    "--corpus", multiple=True, type=click.Path(exists=True, path_type=Path), help="Text files/folders."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
@click.option("--max-steps", type=int, default=None)
@click.option("--nsp/--no-nsp", default=None, help="Also train next-sentence prediction.")
@_SAVE_OPTION
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
    _run_recipe(recipe, save_config, lambda: pretrain_masked(recipe))


@pretrain.command("continued")
@_CONFIG_OPTION
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option("--method", type=click.Choice(["lora", "full"]), default=None)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
@click.option("--max-steps", type=int, default=None)
@_SAVE_OPTION
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
    _run_recipe(recipe, save_config, lambda: pretrain_continued(recipe, cli_settings(ctx)))


@cli.group()
def finetune() -> None:
    """Fine-tuning: grounded data, SFT (LoRA, QLoRA, prompt, prefix, full), preference pairs, reward
    model, DPO and RLHF."""


@finetune.command("data")
@_CONFIG_OPTION
@click.option("--source", type=click.Choice(["squad", "index", "jsonl"]), default=None)
@click.option(
    "--path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="squad-dev folder, index folder, or question/context/answer JSONL.",
)
@click.option(
    "--questions",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --source index: JSONL of {question, answer}.",
)
@click.option("--articles", default=None, help="With --source squad: article range, e.g. 1-16.")
@click.option("--distractors", type=int, default=None)
@click.option("--unanswerable-share", type=float, default=None)
@click.option("--validation-share", type=float, default=None)
@click.option("--max-rows", type=int, default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@_SAVE_OPTION
@click.pass_context
def finetune_data(
    ctx: click.Context,
    config_file: Path | None,
    source: str | None,
    path: Path | None,
    questions: Path | None,
    articles: str | None,
    distractors: int | None,
    unanswerable_share: float | None,
    validation_share: float | None,
    max_rows: int | None,
    out: Path | None,
    save_config: Path | None,
) -> None:
    """Build RAFT-style grounded chat rows (deduplicated, split, with a data card).

    \b
    Examples:
      rag-app finetune data --source squad --path ../shared/data/squad-dev --articles 1-16 --out data/
      rag-app finetune data --source jsonl --path failures.jsonl --out data/
      rag-app finetune data --source index --path my-index --questions qa.jsonl --out data/
    """
    from finetune.config import GroundedDataRecipe, build_recipe
    from finetune.data import write_dataset

    span = None
    if articles:
        first, _, last = articles.partition("-")
        span = [int(first), int(last or first)]
    recipe = build_recipe(
        GroundedDataRecipe,
        config_file,
        **{
            "source": source,
            "path": path,
            "questions": questions,
            "articles": span,
            "distractors": distractors,
            "unanswerable_share": unanswerable_share,
            "validation_share": validation_share,
            "max_rows": max_rows,
            "out": out,
        },
    )
    if save_config is not None:
        _run_recipe(recipe, save_config, lambda: None)
        return
    settings = cli_settings(ctx) if recipe.source == "index" else None
    print_json(write_dataset(recipe, settings)["rows"])


@finetune.command("sft")
@_CONFIG_OPTION
@click.option("--method", type=click.Choice(["lora", "qlora", "prompt", "prefix", "full"]), default=None)
@click.option("--model", default=None, help="Base model (default: the packaged generator).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder written by `rag-app finetune data` (train.jsonl, validation.jsonl).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (train.output_dir)."
)
@click.option("--max-steps", type=int, default=None)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this many minutes.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None, help="train.learning_rate")
@click.option("--rank", type=int, default=None, help="lora.r")
@click.option("--name", default=None, help="Registry name of the adapter.")
@click.option(
    "--register/--no-register", default=None, help="Record the adapter in the registry (default on)."
)
@_SAVE_OPTION
@click.pass_context
def finetune_sft(
    ctx: click.Context,
    config_file: Path | None,
    method: str | None,
    model: str | None,
    data_dir: Path | None,
    out: Path | None,
    max_steps: int | None,
    max_minutes: float | None,
    batch_size: int | None,
    lr: float | None,
    rank: int | None,
    name: str | None,
    register: bool | None,
    save_config: Path | None,
) -> None:
    """Supervised fine-tuning with TRL + PEFT; the adapter is registered (promote it to use it).

    QLoRA needs a CUDA GPU (bitsandbytes); on CPU it stops at once and names LoRA.

    \b
    Examples:
      rag-app finetune sft --method lora --data data/ --out runs/lora --max-steps 100
      rag-app finetune sft --config-file finetune/configs/sft-lora.yaml --max-minutes 20
      rag-app adapters promote lora-20260101-120000
    """
    from finetune.config import SFTRecipe, build_recipe
    from finetune.sft import check_method, sft

    data = (
        {"data.train": data_dir / "train.jsonl", "data.validation": data_dir / "validation.jsonl"}
        if data_dir
        else {}
    )
    recipe = build_recipe(
        SFTRecipe,
        config_file,
        **{
            "method": method,
            "model": model,
            "train.output_dir": out,
            "train.max_steps": max_steps,
            "train.max_minutes": max_minutes,
            "train.batch_size": batch_size,
            "train.learning_rate": lr,
            "lora.r": rank,
            "name": name,
            "register_adapter": register,
            **data,
        },
    )
    if save_config is None:
        check_method(recipe.method)  # before any model loads
    _run_recipe(recipe, save_config, lambda: sft(recipe, cli_settings(ctx)))


@finetune.command("preferences")
@_CONFIG_OPTION
@click.option("--squad", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None)
@click.option("--articles", default=None, help="SQuAD article range, e.g. 1-16.")
@click.option(
    "--halueval",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="HaluEval QA pairs (qa_pairs.jsonl).",
)
@click.option("--halueval-pairs", default=None, help="pair_id range, e.g. 0-3999.")
@click.option(
    "--feedback",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A data folder with the app's feedback.sqlite.",
)
@click.option(
    "--model-negatives",
    type=int,
    default=None,
    help="Prompts to ask the generator for its own wrong answers.",
)
@click.option("--max-per-type", type=int, default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@_SAVE_OPTION
@click.pass_context
def finetune_preferences(
    ctx: click.Context,
    config_file: Path | None,
    squad: Path | None,
    articles: str | None,
    halueval: Path | None,
    halueval_pairs: str | None,
    feedback: Path | None,
    model_negatives: int | None,
    max_per_type: int | None,
    out: Path | None,
    save_config: Path | None,
) -> None:
    """Build preference pairs (prompt, chosen, rejected) for the reward model, DPO and RLHF.

    Contrastive pairs from SQuAD-style data with rule-made hard negatives (a distractor's sentence,
    a swapped name or number, a wrong citation, a false abstention, an answer where the sources
    lack it) and the generator's own wrong answers; HaluEval QA pairs; app feedback.

    \b
    Examples:
      rag-app finetune preferences --articles 1-16 --halueval-pairs 0-3999 --out data/prefs
      rag-app finetune preferences --config-file finetune/configs/preferences.yaml --model-negatives 200
      rag-app finetune preferences --feedback ~/.local/share/rag-app --out data/feedback-prefs
    """
    from finetune.config import PreferenceRecipe, build_recipe
    from finetune.preferences import write_preferences

    recipe = build_recipe(
        PreferenceRecipe,
        config_file,
        **{
            "squad": squad,
            "articles": _span(articles),
            "halueval": halueval,
            "halueval_pairs": _span(halueval_pairs),
            "feedback": feedback,
            "model_negatives": model_negatives,
            "max_per_type": max_per_type,
            "out": out,
        },
    )
    if save_config is not None:
        _run_recipe(recipe, save_config, lambda: None)
        return
    card = write_preferences(recipe, cli_settings(ctx))
    print_json({"rows": card["rows"], "per_type": card["per_type"], "groups": card["groups"]})


def _span(text: str | None) -> list[int] | None:
    """``"1-16"`` -> ``[1, 16]``; ``"3"`` -> ``[3, 3]``."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        return [int(first), int(last or first)]
    except ValueError:
        raise click.BadParameter(f"expected a range like 1-16, got {text!r}") from None


_TRAINING_KEYS = {
    "model": "model", "out": "train.output_dir", "max_steps": "train.max_steps",
    "max_minutes": "train.max_minutes", "lr": "train.learning_rate", "name": "name",
    "register": "register_adapter", "sft_adapter": "sft_adapter", "beta": "beta", "loss_type": "loss_type",
    "reference": "reference", "algorithm": "algorithm", "reward_model": "reward_model",
    "guard_weight": "guard_weight",
}  # fmt: skip
"""Command-line option -> the recipe key it sets, for the alignment commands."""


def _alignment_recipe(cls: type, options: dict[str, Any]) -> Any:
    """The recipe from ``--config-file`` plus the options given (``--data`` names both pair files)."""
    from finetune.config import build_recipe

    data_dir = options.pop("data_dir", None)
    config_file = options.pop("config_file", None)
    overrides = {_TRAINING_KEYS[k]: v for k, v in options.items() if k in _TRAINING_KEYS}
    if data_dir is not None:
        overrides.update(
            {"data.train": data_dir / "train.jsonl", "data.validation": data_dir / "validation.jsonl"}
        )
    return build_recipe(cls, config_file, **overrides)


def _training_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every alignment command shares (output, budget, learning rate, registry name)."""
    for option in reversed(
        [
            _CONFIG_OPTION,
            click.option("--model", default=None, help="Base model (default: the recipe's)."),
            click.option(
                "--data",
                "data_dir",
                type=click.Path(file_okay=False, exists=True, path_type=Path),
                default=None,
                help="Folder written by `rag-app finetune preferences` (train.jsonl, validation.jsonl).",
            ),
            click.option("--out", type=click.Path(path_type=Path), default=None, help="train.output_dir"),
            click.option("--max-steps", type=int, default=None),
            click.option(
                "--max-minutes", type=float, default=None, help="Stop training after this many minutes."
            ),
            click.option("--lr", type=float, default=None, help="train.learning_rate"),
            click.option("--name", default=None, help="Registry name of the adapter."),
            click.option(
                "--register/--no-register", default=None, help="Record it in the registry (default on)."
            ),
            _SAVE_OPTION,
        ]
    ):
        function = option(function)
    return function


@finetune.command("reward")
@_training_options
@click.pass_context
def finetune_reward(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Train a reward model (TRL RewardTrainer, LoRA + a scalar head) on preference pairs.

    Reports pairwise accuracy on the validation pairs beside the guard used as a reward.

    \b
    Example:
      rag-app finetune reward --config-file finetune/configs/reward.yaml --data data/prefs --max-minutes 20
    """
    from finetune.config import RewardRecipe
    from finetune.reward import train_reward

    recipe = _alignment_recipe(RewardRecipe, options)
    _run_recipe(recipe, save_config, lambda: train_reward(recipe, cli_settings(ctx)))


@finetune.command("dpo")
@_training_options
@click.option("--sft-adapter", default=None, help="Start from this SFT adapter (folder or registry name).")
@click.option("--beta", type=float, default=None)
@click.option("--loss-type", type=click.Choice(["sigmoid", "ipo", "hinge", "robust"]), default=None)
@click.option("--reference", type=click.Choice(["adapter-disabled", "copy"]), default=None)
@click.pass_context
def finetune_dpo(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Direct preference optimisation of a LoRA adapter (TRL DPOTrainer), after SFT or from the base.

    \b
    Examples:
      rag-app finetune dpo --data data/prefs --sft-adapter reader-sft --beta 0.1 --max-minutes 30
      rag-app finetune dpo --config-file finetune/configs/dpo.yaml --loss-type ipo
    """
    from finetune.config import DPORecipe
    from finetune.dpo import dpo

    recipe = _alignment_recipe(DPORecipe, options)
    _run_recipe(recipe, save_config, lambda: dpo(recipe, cli_settings(ctx)))


@finetune.command("rlhf")
@_training_options
@click.option("--algorithm", type=click.Choice(["grpo", "rloo"]), default=None)
@click.option("--sft-adapter", default=None, help="Start the policy from this adapter (folder or name).")
@click.option("--reward-model", default=None, help="A reward model (folder or registry name).")
@click.option("--guard-weight", type=float, default=None)
@click.option("--beta", type=float, default=None, help="KL penalty to the reference.")
@click.pass_context
def finetune_rlhf(ctx: click.Context, save_config: Path | None, **options: Any) -> None:
    """Online RL against hallucination (TRL GRPO or RLOO) of a LoRA policy; the reward curve is logged.

    Reward: the reward model and/or the guard's support, minus a penalty for a missing or wrong
    citation, plus a bonus for abstaining where the sources lack the answer; KL to the reference.

    \b
    Example:
      rag-app finetune rlhf --data data/prefs --reward-model reward-0.5b --max-steps 30
    """
    from finetune.config import RLHFRecipe
    from finetune.rlhf import rlhf

    recipe = _alignment_recipe(RLHFRecipe, options)
    _run_recipe(recipe, save_config, lambda: rlhf(recipe, cli_settings(ctx)))


@finetune.command("reader")
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="HaluEval QA pairs (qa_pairs.jsonl); pairs 0-3,999 train, 4,000-4,999 validate.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/reader"), show_default=True)
@click.option("--answer-rows", type=int, default=600, show_default=True)
@click.option(
    "--top-layers", type=int, default=8, show_default=True, help="LoRA on the last N decoder layers."
)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this many minutes.")
@click.option("--threads", type=int, default=None, help="Torch threads (default: one per core).")
@click.pass_context
def finetune_reader(
    ctx: click.Context,
    data_file: Path,
    out: Path,
    answer_rows: int,
    top_layers: int,
    max_minutes: float | None,
    threads: int | None,
) -> None:
    """Train the reader adapter of the packaged 0.5B generator (what rag-app ships in rag_app/adapters).

    Short cited answers, the abstention sentence, and the verifier's yes/no, from HaluEval QA only.
    About an hour on two CPU cores.

    \b
    Example (reproduces the packaged adapter):
      rag-app finetune reader --data ../shared/data/halueval-qa/qa_pairs.jsonl --out runs/reader
    """
    from finetune.reader import ReaderRecipe, train_reader
    from finetune.reader_data import ReaderMix

    share = max(1, answer_rows // 4)
    recipe = ReaderRecipe(
        data=data_file,
        out=out,
        mix=ReaderMix(answer_rows, share, share, share, sources=3),
        top_layers=top_layers,
        max_minutes=max_minutes,
        threads=threads,
    )
    card = train_reader(recipe, cli_settings(ctx))
    print_json({k: v for k, v in card.items() if k != "data"})


@cli.group()
def adapters() -> None:
    """The adapter registry: list, inspect, promote, roll back, merge."""


def _registry(ctx: click.Context) -> Any:
    from finetune.registry import Registry

    return Registry.from_settings(cli_settings(ctx))


@adapters.command("ls")
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


@adapters.command("show")
@click.argument("name")
@click.pass_context
def adapters_show(ctx: click.Context, name: str) -> None:
    """Everything recorded about one adapter (JSON)."""
    print_json(_registry(ctx).require(name).to_dict())


@adapters.command("promote")
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


@adapters.command("rollback")
@click.pass_context
def adapters_rollback(ctx: click.Context) -> None:
    """Return to the adapter promoted before the current one (or to none)."""
    record = _registry(ctx).rollback()
    click.echo(f"promoted {record.name}" if record else "no adapter is promoted now")


@adapters.command("merge")
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
    removed = _open_rag(ctx, folder).delete(list(sources))
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
