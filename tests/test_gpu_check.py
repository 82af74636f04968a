"""bench/gpu_check.py on a machine without a GPU: it records why each check was skipped, cleanly."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_both_checks_are_skipped_with_the_reason(gpu_check: ModuleType, tmp_path: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is present")
    assert gpu_check.main(["--out", str(tmp_path), "--no-install"]) == 0
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["gpu"] is None
    assert set(record["checks"]) == {"faiss", "vllm"}
    for name in ("faiss", "vllm"):
        assert record["checks"][name] == {"status": "skipped", "reason": "no GPU here (nvidia-smi not found)"}


def test_dry_run_records_the_commands_and_runs_none(gpu_check: ModuleType, tmp_path: Path) -> None:
    assert gpu_check.main(["--out", str(tmp_path), "--dry-run", "--checks", "vllm"]) == 0
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["dry_run"] is True and record["checks"] == {
        "vllm": {"status": "skipped", "reason": "--dry-run"}
    }
    serve = record["plan"]["vllm"]["serve"]
    assert "serve-llm" in serve and "--max-model-len" in serve
    assert not (tmp_path / "vllm.log").exists()


def test_faiss_worker_on_cpu_faiss_says_it_has_no_gpu_support(gpu_check: ModuleType) -> None:
    faiss = pytest.importorskip("faiss")
    if faiss.get_num_gpus():
        pytest.skip("faiss sees a GPU")
    result = gpu_check.faiss_worker(1000, 10)
    assert result["status"] == "skipped" and "no GPU support" in result["reason"]
