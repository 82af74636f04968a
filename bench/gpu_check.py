"""The GPU path, checked in one short run on a lent GPU machine (issue 16, part 4).

Two checks, each recorded in ``$OUT/gpu_check.json`` (``--out`` elsewhere) with what ran, its
figures and, when it could not run, why:

- ``faiss``: a flat and an IVF-PQ index of ``--vectors`` unit vectors (384 dims) built on CPU,
  moved with ``faiss.index_cpu_to_all_gpus`` (IVF-PQ through rag-app's ``VectorIndex.to_device``
  when rag-app imports there), searched on both with the same queries: ids overlap@10, largest
  score difference, and batch and single-query timings of each;
- ``vllm``: ``rag-app serve-llm`` (vLLM on the packaged Qwen2.5-Coder-0.5B with its packaged LoRA
  reader adapter, ``generator.adapter = "packaged"``), waited for on ``/v1/models``, then
  ``rag-app ingest`` of README.md and ``rag-app ask`` through the ``openai`` backend against it.

A missing package is pip-installed first (``faiss-gpu-cu12``, ``vllm``; ``--wheels DIR`` installs
from carried wheels with ``--no-index``; ``--no-install`` never installs). Without a GPU
(no ``nvidia-smi``) both checks are recorded as skipped and the script exits 0; ``--dry-run``
records the commands it would run and runs none.

    python bench/gpu_check.py --dry-run            # what it would do, here
    python bench/gpu_check.py                      # on the GPU machine: $OUT/gpu_check.json

Every step has a timeout; the whole run is sized to stay under 10 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DIM = 384
PACKAGES = {"faiss": ["faiss-gpu-cu12"], "vllm": ["vllm"]}
"""Module -> what pip installs for it (faiss-cpu is uninstalled first: both provide ``faiss``)."""
VLLM_PORT = 8011
QUESTION = "What does rag-app do when retrieval finds nothing relevant?"


def gpu_info() -> dict[str, Any] | None:
    """``nvidia-smi -L``'s GPUs, or None when there is no NVIDIA GPU (or driver) here."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"gpus": [], "error": str(exc)}
    gpus = [line.strip() for line in listed.splitlines() if line.strip()]
    return {"gpus": gpus} if gpus else None


def _tail(text: str, chars: int = 2000) -> str:
    return text[-chars:]


def has_module(name: str) -> bool:
    """Whether ``import name`` works in a fresh interpreter (after an install in this run)."""
    probe = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, timeout=120, check=False
    )
    return probe.returncode == 0


def install_command(module: str, wheels: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "-q"]
    if wheels is not None:
        cmd += ["--no-index", "--find-links", str(wheels)]
    return cmd + PACKAGES[module]


def ensure(module: str, args: argparse.Namespace) -> dict[str, Any]:
    """Install ``module``'s package when it is missing and installing is allowed; what happened."""
    if has_module(module):
        return {"module": module, "present": True, "installed": False}
    if args.no_install:
        return {"module": module, "present": False, "installed": False, "reason": "--no-install"}
    steps = []
    if module == "faiss":  # faiss-cpu and faiss-gpu both install the `faiss` package
        steps.append([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "faiss-cpu"])
    steps.append(install_command(module, args.wheels))
    log = []
    for cmd in steps:
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.install_timeout_s, check=False
            )
            log.append({"cmd": cmd, "rc": done.returncode, "output": _tail(done.stdout + done.stderr)})
        except subprocess.TimeoutExpired:
            log.append({"cmd": cmd, "rc": None, "output": f"timed out after {args.install_timeout_s} s"})
    present = has_module(module)
    return {"module": module, "present": present, "installed": present, "steps": log}


# -- faiss -------------------------------------------------------------------------------------
def faiss_worker(n: int, n_queries: int) -> dict[str, Any]:
    """Build on CPU, move to all GPUs, search both, compare; runs in its own interpreter."""
    import faiss
    import numpy as np

    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if gpus == 0:
        return {
            "status": "skipped",
            "reason": "this faiss has no GPU support (faiss-cpu?)",
            "faiss": faiss.__version__,
        }
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, DIM), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.choice(n, n_queries, replace=False)] + 0.05 * rng.standard_normal(
        (n_queries, DIM), dtype=np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out: dict[str, Any] = {
        "status": "ran",
        "faiss": faiss.__version__,
        "gpus": gpus,
        "vectors": n,
        "queries": n_queries,
    }

    def compare(cpu: Any, gpu: Any, k: int = 10) -> dict[str, Any]:
        start = time.perf_counter()
        cpu_s, cpu_i = cpu.search(queries, k)
        cpu_t = time.perf_counter() - start
        gpu.search(queries[:10], k)  # warm-up
        start = time.perf_counter()
        gpu_s, gpu_i = gpu.search(queries, k)
        gpu_t = time.perf_counter() - start
        overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu_i, gpu_i, strict=True)])
        single = []
        for q in queries[:100]:
            t = time.perf_counter()
            gpu.search(q.reshape(1, -1), k)
            single.append(time.perf_counter() - t)
        return {
            "ids_overlap_at_10": round(float(overlap), 4),
            "max_score_diff": round(float(np.max(np.abs(np.sort(cpu_s, 1) - np.sort(gpu_s, 1)))), 6),
            "cpu_batch_s": round(cpu_t, 3),
            "gpu_batch_s": round(gpu_t, 3),
            "gpu_single_p50_ms": round(float(np.median(single)) * 1000, 3),
        }

    flat = faiss.IndexFlatIP(DIM)
    flat.add(data)
    out["flat"] = compare(flat, faiss.index_cpu_to_all_gpus(flat))
    out["flat"]["ok"] = out["flat"]["ids_overlap_at_10"] >= 0.99 and out["flat"]["max_score_diff"] <= 1e-3
    try:  # rag-app's own path: VectorIndex.to_device("always")
        sys.path.insert(0, str(REPO_ROOT))
        from rag_app.store import vectors as vec

        spec = vec.choose_spec(n, "ivfpq", {"refine": 0})
        start = time.perf_counter()
        index = vec.build_index(spec, DIM, [(np.arange(n, dtype=np.int64), data)])
        built = time.perf_counter() - start
        moved = index.to_device("always")
        out["ivfpq"] = {"via": "rag_app VectorIndex.to_device", "params": vec.recorded_params(index, spec)}
        out["ivfpq"] |= compare(index.index, moved.index) | {"cpu_build_s": round(built, 1)}  # type: ignore[attr-defined]
        hits = moved.search(queries[0], 10)
        out["ivfpq"]["protocol_search_hits"] = len(hits)
    except ImportError as exc:  # rag-app's dependencies are not installed there: faiss alone
        nlist = 1024
        cpu = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        cpu.train(data[: 40 * nlist])
        cpu.add(data)
        cpu.nprobe = 32
        out["ivfpq"] = {
            "via": f"faiss directly (rag_app: {exc})",
            "cpu_build_s": round(time.perf_counter() - start, 1),
        }
        out["ivfpq"] |= compare(cpu, faiss.index_cpu_to_all_gpus(cpu))
    out["ivfpq"]["ok"] = out["ivfpq"]["ids_overlap_at_10"] >= 0.9
    return out


def check_faiss(args: argparse.Namespace) -> dict[str, Any]:
    setup = ensure("faiss", args)
    if not setup["present"]:
        return {
            "status": "skipped",
            "reason": "faiss is not installed and could not be installed",
            "setup": setup,
        }
    cmd = [sys.executable, __file__, "--worker", "faiss", "--vectors", str(args.vectors)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.faiss_timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {args.faiss_timeout_s} s", "setup": setup}
    if done.returncode != 0:
        return {"status": "failed", "rc": done.returncode, "stderr": _tail(done.stderr), "setup": setup}
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"setup": setup}


# -- vLLM --------------------------------------------------------------------------------------
def rag_app_cmd() -> list[str]:
    exe = shutil.which("rag-app")
    return [exe] if exe else [sys.executable, "-c", "from rag_app.cli import main; main()"]


def vllm_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "RAG_APP_GENERATOR__ADAPTER": "packaged",
            "RAG_APP_GENERATOR__BACKEND": "openai",
            "RAG_APP_GENERATOR__BASE_URL": f"http://127.0.0.1:{VLLM_PORT}/v1",
            "RAG_APP_GENERATOR__TIMEOUT_S": "120",
            "RAG_APP_DATA_DIR": str(base / "data"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def serve_llm_cmd() -> list[str]:
    flags = ["--port", str(VLLM_PORT), "--max-model-len", "4096", "--gpu-memory-utilization", "0.3"]
    return [*rag_app_cmd(), "serve-llm", *flags]


def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return {"ready": False, "reason": f"vLLM exited with {proc.returncode} before it answered"}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{VLLM_PORT}/v1/models", timeout=5) as reply:
                models = [m["id"] for m in json.load(reply)["data"]]
                return {"ready": True, "seconds": round(time.monotonic() - start, 1), "models": models}
        except (OSError, ValueError, KeyError):
            time.sleep(3)
    return {"ready": False, "reason": f"not answering after {timeout:.0f} s"}


def check_vllm(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    setup = ensure("vllm", args)
    if not setup["present"]:
        return {
            "status": "skipped",
            "reason": "vllm is not installed and could not be installed",
            "setup": setup,
        }
    base = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = vllm_env(base)
    result: dict[str, Any] = {"setup": setup, "serve_cmd": serve_llm_cmd()}
    log = (out_dir / "vllm.log").open("wb")
    proc = subprocess.Popen(
        serve_llm_cmd(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        result["serve"] = wait_ready(proc, args.vllm_timeout_s)
        if not result["serve"]["ready"]:
            return result | {"status": "failed"}
        index = base / "index"
        steps = {
            "ingest": [*rag_app_cmd(), "ingest", str(REPO_ROOT / "README.md"), "--index", str(index)],
            "ask": [*rag_app_cmd(), "ask", QUESTION, "--index", str(index), "--json"],
        }
        for name, cmd in steps.items():
            start = time.monotonic()
            try:
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
            except subprocess.TimeoutExpired:
                return result | {"status": "failed", name: {"reason": "timed out after 240 s"}}
            result[name] = {"rc": done.returncode, "seconds": round(time.monotonic() - start, 1)}
            result[name]["output"] = _tail(done.stdout, 3000) if done.returncode == 0 else _tail(done.stderr)
            if done.returncode != 0:
                return result | {"status": "failed"}
        return result | {"status": "ran", "ok": True}
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with_group = hasattr(os, "killpg")
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            if with_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            proc.wait(timeout=wait)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


# -- the run -----------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> dict[str, Any]:
    """The commands a real run would start (``--dry-run``)."""
    return {
        "faiss": {
            "install": None if has_module("faiss") else install_command("faiss", args.wheels),
            "worker": [sys.executable, __file__, "--worker", "faiss", "--vectors", str(args.vectors)],
        },
        "vllm": {
            "install": None if has_module("vllm") else install_command("vllm", args.wheels),
            "serve": serve_llm_cmd(),
            "ingest_and_ask": [
                "rag-app ingest README.md --index TMP",
                f"rag-app ask {QUESTION!r} --index TMP",
            ],
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    checks = [c for c in args.checks.split(",") if c]
    record: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "gpu": gpu_info(),
        "checks": {},
    }
    if args.dry_run:
        record["dry_run"] = True
        record["plan"] = plan(args)
        for name in checks:
            record["checks"][name] = {"status": "skipped", "reason": "--dry-run"}
        return record
    for name in checks:
        if record["gpu"] is None:
            record["checks"][name] = {"status": "skipped", "reason": "no GPU here (nvidia-smi not found)"}
            continue
        started = time.monotonic()
        try:
            result = check_faiss(args) if name == "faiss" else check_vllm(args, args.out)
        except Exception as exc:  # one check's crash is recorded; the other still runs
            result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        record["checks"][name] = result | {"seconds": round(time.monotonic() - started, 1)}
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or REPO_ROOT / "bench" / "results")
    )
    parser.add_argument("--checks", default="faiss,vllm", help="comma-separated: faiss, vllm")
    parser.add_argument("--dry-run", action="store_true", help="record the plan, run nothing")
    parser.add_argument("--no-install", action="store_true", help="never pip-install a missing package")
    parser.add_argument("--wheels", type=Path, default=None, help="install from these wheels (--no-index)")
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--install-timeout-s", type=float, default=180)
    parser.add_argument("--faiss-timeout-s", type=float, default=180)
    parser.add_argument("--vllm-timeout-s", type=float, default=240)
    parser.add_argument("--worker", choices=("faiss",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "faiss":
        print(json.dumps(faiss_worker(args.vectors, 1000)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    record = run(args)
    path = args.out / "gpu_check.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    for name, result in record["checks"].items():
        print(f"{name}: {result['status']}" + (f" ({result['reason']})" if "reason" in result else ""))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
