"""``rag-app serve-llm``: the vLLM command for the configured generator and its LoRA adapters.

vLLM runs as its own process (or container, see ``deploy/``) and speaks the OpenAI API; the app
reaches it with ``generator.backend = "openai"`` and ``generator.base_url``. vLLM loads
Hugging Face folders, so the packaged GGUF is served from its converted safetensors folder.
The served model name is ``generator.model``, and each adapter is served under its own name, so
the same settings work on both sides: the ``openai`` backend asks for ``generator.adapter`` when
set, else ``generator.model``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from rag_app.errors import ConfigError, GeneratorError
from rag_app.generation import adapter_folder
from rag_app.models import generator_folder, resolve_generator
from rag_app.settings import Settings

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``--max-lora-rank`` values vLLM accepts; the adapters' largest rank is rounded up to one."""

PROMOTED = "promoted"


def model_source(settings: Settings) -> str:
    """What vLLM loads: a local folder (a GGUF converted once, cached), or a hub id (vLLM downloads it)."""
    resolved = resolve_generator(settings.generator.model, settings)
    if resolved.kind == "hub" and resolved.hub_id:
        return resolved.hub_id
    return str(generator_folder(settings))


def adapters_to_serve(settings: Settings) -> dict[str, Path]:
    """Served name -> folder for ``generator.adapter``: a folder under its own name; ``promoted`` under
    ``promoted`` (the name the ``openai`` backend asks for) and under its own name."""
    folder = adapter_folder(settings)
    if folder is None:
        return {}
    if settings.generator.adapter == PROMOTED:
        return {PROMOTED: folder, folder.name: folder}
    return {folder.name: folder}


def lora_rank(folder: Path) -> int:
    """The rank ``r`` in an adapter's ``adapter_config.json``."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        return int(config["r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"LoRA adapter {folder}: no rank in adapter_config.json ({exc})") from None


def vllm_command(
    settings: Settings,
    adapters: Mapping[str, Path] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
) -> list[str]:
    """``vllm serve MODEL ...`` as an argument list (``shlex.join`` it to print).

    ``adapters`` maps served names to LoRA adapter folders; with any, LoRA is enabled and
    ``--max-lora-rank`` covers the largest rank. The packaged GGUF is converted first if needed.
    """
    if tensor_parallel_size < 1:
        raise ConfigError(f"--tensor-parallel-size must be >= 1, got {tensor_parallel_size}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
    g = settings.generator
    cmd = [
        "vllm", "serve", model_source(settings),
        "--host", host,
        "--port", str(port),
        "--served-model-name", g.model,
        "--tensor-parallel-size", str(tensor_parallel_size),
        "--gpu-memory-utilization", f"{gpu_memory_utilization:g}",
        "--dtype", "bfloat16" if g.dtype == "auto" else g.dtype,
    ]  # fmt: skip
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if adapters:
        rank = max(lora_rank(folder) for folder in adapters.values())
        allowed = [r for r in LORA_RANKS if r >= rank]
        if not allowed:
            raise ConfigError(f"LoRA rank {rank} is above what vLLM serves ({LORA_RANKS[-1]})")
        cmd += ["--enable-lora", "--max-loras", str(len(adapters)), "--max-lora-rank", str(allowed[0])]
        cmd += ["--lora-modules", *(f"{name}={folder}" for name, folder in adapters.items())]
    return cmd


def run_vllm(cmd: list[str]) -> NoReturn:
    """Replace this process with ``cmd`` (signals then reach vLLM directly).

    Raises :class:`GeneratorError` with the command to run elsewhere when ``vllm`` is not on PATH.
    """
    executable = shutil.which(cmd[0])
    if executable is None:
        raise GeneratorError(
            f"vLLM is not installed here ({cmd[0]!r} is not on PATH); it runs as its own process or "
            f"container: see deploy/ (or pip install 'rag-app[vllm]' on a GPU machine) — "
            f"the command would be: {shlex.join(cmd)}"
        )
    os.execv(executable, cmd)
