"""``rag-app ui``, ``serve-llm`` and ``serve``: the Streamlit app, vLLM, and the REST API with its keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from rag_app.cli_common import cli_settings, print_json

if TYPE_CHECKING:
    from rag_app.server.keys import KeyStore

__all__ = ["serve", "serve_llm", "ui"]


def _streamlit_app_file() -> Path:
    """``streamlit_app.py``: installed beside the packages, or at the top of a source checkout."""
    import importlib.util

    spec = importlib.util.find_spec("streamlit_app")
    if spec is not None and spec.origin:
        return Path(spec.origin)
    return Path(__file__).resolve().parents[1] / "streamlit_app.py"


@click.command()
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


@click.command("serve-llm")
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


@click.group(invoke_without_command=True)
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
