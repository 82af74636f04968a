"""``rag-app serve-llm``: the vLLM command for the packaged model and for LoRA adapters, and running it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag_app.errors import ConfigError, GeneratorError
from rag_app.models import generator_folder
from rag_app.serving import adapters_to_serve, run_vllm, vllm_command
from rag_app.settings import Settings


def _with(settings: Settings, **generator: Any) -> Settings:
    return settings.model_copy(update={"generator": settings.generator.model_copy(update=generator)})


def _adapter(folder: Path, rank: int) -> Path:
    """An adapter folder as PEFT saves it (only its config matters to the command)."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_command_for_the_packaged_defaults(settings: Settings) -> None:
    cmd = vllm_command(_with(settings, dtype="auto"))  # the default dtype; the test settings pin float32
    folder = generator_folder(settings)  # vLLM loads the converted safetensors folder, not the GGUF
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert cmd == [
        "vllm", "serve", str(folder),
        "--host", "127.0.0.1",
        "--port", "8000",
        "--served-model-name", "SmolLM2-135M-Instruct",
        "--tensor-parallel-size", "1",
        "--gpu-memory-utilization", "0.9",
        "--dtype", "bfloat16",
    ]  # fmt: skip


def test_command_with_two_lora_adapters(settings: Settings, tmp_path: Path) -> None:
    adapters = {"legal": _adapter(tmp_path / "legal", 8), "medical": _adapter(tmp_path / "medical", 24)}
    cmd = vllm_command(
        _with(settings, dtype="float32"),
        adapters,
        host="0.0.0.0",
        port=9000,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=4096,
    )
    line = shlex.join(cmd)
    assert "--host 0.0.0.0 --port 9000" in line and "--tensor-parallel-size 2" in line
    assert "--gpu-memory-utilization 0.85 --dtype float32 --max-model-len 4096" in line
    assert "--enable-lora --max-loras 2 --max-lora-rank 32" in line  # rank 24 rounded up to what vLLM takes
    assert cmd[-3:] == ["--lora-modules", f"legal={tmp_path / 'legal'}", f"medical={tmp_path / 'medical'}"]


def test_local_model_folder_and_configured_adapter(settings: Settings, tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    adapter = _adapter(tmp_path / "support-v2", 16)
    local = _with(settings, model=str(model), adapter=str(adapter))
    assert adapters_to_serve(local) == {"support-v2": adapter}
    cmd = vllm_command(local, adapters_to_serve(local))
    assert cmd[:3] == ["vllm", "serve", str(model)]
    assert cmd[cmd.index("--served-model-name") + 1] == str(model)  # the same name generator.model sends
    assert cmd[-2:] == ["--lora-modules", f"support-v2={adapter}"]
    assert adapters_to_serve(settings) == {}


def test_bad_options_name_the_flag(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="--tensor-parallel-size"):
        vllm_command(settings, tensor_parallel_size=0)
    with pytest.raises(ConfigError, match="--gpu-memory-utilization"):
        vllm_command(settings, gpu_memory_utilization=1.5)


def test_missing_vllm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    cmd = ["vllm", "serve", "/models/x", "--port", "8000"]
    with pytest.raises(GeneratorError) as error:
        run_vllm(cmd)
    message = str(error.value)
    assert message.startswith("vLLM is not installed here")
    assert "see deploy/" in message
    assert message.endswith("the command would be: vllm serve /models/x --port 8000")


def test_run_vllm_replaces_the_process(tmp_path: Path) -> None:
    """With a ``vllm`` on PATH (here a script that prints its arguments), the process becomes it."""
    fake = tmp_path / "vllm"
    fake.write_text('#!/bin/sh\necho "vllm got: $*"\nexit 3\n', encoding="utf-8")
    fake.chmod(0o755)
    code = "from rag_app.serving import run_vllm; run_vllm(['vllm', 'serve', 'm', '--port', '1'])"
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "vllm got: serve m --port 1\n")
