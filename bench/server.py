"""REST API throughput and latency: ``/search`` and ``/v1/chat/completions`` at 1, 4 and 16 clients.

The server is ``rag-app serve`` in its own process on 127.0.0.1 (JSON request logs on, API key
checked, rate limit off), over an index of examples/docs. The clients are asyncio tasks on one
``httpx.AsyncClient`` in this process, each sending its next request as soon as the last one is
answered, for a fixed time per level (requests in flight at the deadline finish and count, up to
``--grace`` seconds more; any still queued then are cancelled and reported as ``unfinished``).
Throughput is completed requests over the wall time of the level; latency is per request, measured
by the client.

Chat completions use the real packaged SmolLM2-135M-Instruct (transformers, CPU) with
``generator.max_new_tokens`` = ``--max-tokens`` (16), 3 passages and a 400-token source budget
(``--chat-k``, ``--context-tokens``; the defaults are 5 and 1200, whose prefill dominates on a CPU),
non-streamed, with one torch thread (``--generator-threads``: on a busy 2-core machine two threads
spin-wait on each other and an answer took 90-107 s instead of 4.5 s); the server runs one
generation at a time, so more clients add queueing, not throughput.

The HTTP overhead is the ratio of p50 latencies of the same requests over HTTP (one client) and
called on a ``RAG`` in this process (``rag.search``; ``rag.ask`` for chat), alternated
pair by pair so that both see the same machine load.

    python bench/server.py                          # writes bench/results/server.json
    python bench/server.py --search-seconds 5 --chat-seconds 10 --levels 1 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    latency_summary,
    load_average,
    warn_if_busy,
    write_results,
)

from rag_app.rag import RAG
from rag_app.server.keys import KeyStore
from rag_app.settings import Settings

QUESTIONS = [
    "Does rag-app need a GPU?",
    "Which embedding model is used by default?",
    "Can two programs write to the same index at once?",
    "How do I ingest a folder of documents?",
    "Which file formats are supported?",
    "What happens when I ingest the same folder again?",
    "How does hybrid retrieval work?",
    "What is stored in an index folder?",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16], help="Concurrent clients.")
    parser.add_argument("--search-seconds", type=float, default=8.0, help="Time per /search level.")
    parser.add_argument("--chat-seconds", type=float, default=20.0, help="Time per chat level.")
    parser.add_argument(
        "--grace", type=float, default=180.0, help="Most seconds to finish in-flight requests."
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="generator.max_new_tokens for chat.")
    parser.add_argument("--context-tokens", type=int, default=400, help="generator.context_tokens for chat.")
    parser.add_argument("--chat-k", type=int, default=3, help="Passages per chat answer.")
    parser.add_argument(
        "--generator-threads", type=int, default=1, help="generator.threads (0: the default, one per core)."
    )
    parser.add_argument("--no-guard", action="store_true", help="Answer without the hallucination guard.")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "server.json")
    return parser.parse_args()


def guard_available(settings: Settings, index: Path) -> bool:
    from rag_app.errors import RagAppError

    try:
        guard = RAG(index, settings).guard
        return guard is not None and guard.check("Paris.", ["Paris."], cited=None, context="") is not None
    except (RagAppError, OSError) as exc:
        print(f"guard unavailable ({exc}); chat runs without it", flush=True)
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_app.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            cwd=REPO_ROOT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"rag-app serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"rag-app serve did not answer /health within 120 s; see {log}")


def request_body(kind: str, i: int, chat_k: int) -> tuple[str, dict[str, Any]]:
    question = QUESTIONS[i % len(QUESTIONS)]
    if kind == "search":
        return "/search", {"query": question, "k": 5}
    messages = [{"role": "user", "content": question}]
    return "/v1/chat/completions", {"model": "docs", "messages": messages, "k": chat_k}


async def run_level(
    url: str, key: str, kind: str, clients: int, seconds: float, chat_k: int, grace: float = 180.0
) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``seconds``; latencies of the completed requests.

    Requests in flight at the deadline may finish within ``grace`` seconds; later ones are cancelled.
    """
    latencies: list[float] = []
    failures: dict[str, int] = {}
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=600) as http:
        start = time.perf_counter()
        deadline = start + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                path, body = request_body(kind, next(counter), chat_k)
                t0 = time.perf_counter()
                response = await http.post(path, json=body)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + grace)
        for task in pending:  # still queued after the grace period: cancelled, counted as unfinished
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - start
    return {
        "endpoint": "/search" if kind == "search" else "/v1/chat/completions",
        "clients": clients,
        "wall_s": round(wall, 2),
        "completed": len(latencies),
        "failed": failures,
        "unfinished": len(pending),
        "requests_per_s": round(len(latencies) / wall, 2),
        **latency_summary(latencies),
        "load_average_after": load_average(),
    }


def paired(rag: RAG, url: str, key: str, kind: str, seconds: float, chat_k: int) -> dict[str, Any]:
    """The same request in-process and over HTTP (one client), alternated so both see the same load.

    The order flips every pair; the ratio of the p50s is the HTTP layer's cost (routing, JSON, auth,
    logs, metrics, the worker-thread hop, the client) over calling ``RAG`` directly.
    """
    direct_s: list[float] = []
    http_s: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http:
        while time.perf_counter() < deadline or len(direct_s) < 2:
            question = QUESTIONS[i % len(QUESTIONS)]
            path, body = request_body(kind, i, chat_k)

            def in_process(question: str = question) -> None:
                t0 = time.perf_counter()
                if kind == "search":
                    rag.search(question, 5)
                else:
                    rag.ask(question, chat_k)
                direct_s.append(time.perf_counter() - t0)

            def over_http(path: str = path, body: dict[str, Any] = body) -> None:
                t0 = time.perf_counter()
                http.post(path, json=body).raise_for_status()
                http_s.append(time.perf_counter() - t0)

            for call in (in_process, over_http) if i % 2 == 0 else (over_http, in_process):
                call()
            i += 1
    direct, over = latency_summary(direct_s), latency_summary(http_s)
    return {
        "pairs": len(direct_s),
        "direct": direct,
        "http": over,
        "ratio_p50": round(over["p50_ms"] / direct["p50_ms"], 3),
        "added_ms_p50": round(over["p50_ms"] - direct["p50_ms"], 3),
        "load_average_after": load_average(),
    }


def main() -> None:
    args = parse_args()
    load_before = warn_if_busy("start")
    settings = Settings.load()
    settings.generator.max_new_tokens = args.max_tokens
    settings.generator.context_tokens = args.context_tokens
    settings.generator.threads = args.generator_threads or None
    work = WORK_DIR / "server"
    index = work / "indexes" / "docs"
    RAG(index, settings).ingest([REPO_ROOT / "examples" / "docs"])
    guard = not args.no_guard and guard_available(settings, index)
    settings.guard.enabled = guard

    keys_file = Path(tempfile.mkdtemp(prefix="rag-app-bench-")) / "keys.json"
    _, key = KeyStore(keys_file).add("read", "bench")
    env = {
        **os.environ,
        "RAG_APP_CACHE_DIR": str(settings.cache_dir),
        "RAG_APP_SERVER__INDEXES_DIR": str(index.parent),
        "RAG_APP_SERVER__DEFAULT_INDEX": "docs",
        "RAG_APP_SERVER__API_KEYS_FILE": str(keys_file),
        "RAG_APP_SERVER__RATE_LIMIT_PER_MINUTE": "0",
        "RAG_APP_GENERATOR__MAX_NEW_TOKENS": str(args.max_tokens),
        "RAG_APP_GENERATOR__CONTEXT_TOKENS": str(args.context_tokens),
        **({"RAG_APP_GENERATOR__THREADS": str(args.generator_threads)} if args.generator_threads else {}),
        "RAG_APP_GUARD__ENABLED": "true" if guard else "false",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "server.log"
    proc = start_server(env, port, log)
    levels: list[dict[str, Any]] = []
    overhead: dict[str, Any] = {}
    rag = RAG.open(index, settings)  # the in-process side of the overhead pairs
    try:
        for kind, seconds in (("search", args.search_seconds), ("chat", args.chat_seconds)):
            asyncio.run(run_level(url, key, kind, 1, 1.0, args.chat_k))  # warm-up: models load here
            paired(rag, url, key, kind, 0.5, args.chat_k)  # warm-up of the in-process models
            overhead[kind] = paired(rag, url, key, kind, seconds, args.chat_k)
            print(json.dumps({kind: overhead[kind]}), flush=True)
            for clients in args.levels:
                row = asyncio.run(run_level(url, key, kind, clients, seconds, args.chat_k, args.grace))
                print(json.dumps(row), flush=True)
                levels.append(row)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()

    payload = {
        "setup": {
            "index": "examples/docs (3 documents)",
            "generator": f"{settings.generator.model} ({settings.generator.backend}), "
            f"max_new_tokens={args.max_tokens}, context_tokens={args.context_tokens}, k={args.chat_k}, "
            f"threads={args.generator_threads or 'one per core'}, "
            "greedy, non-streamed",
            "guard": guard,
            "server": "rag-app serve (uvicorn, 1 process), JSON logs on, API key checked, rate limit off",
            "clients": "httpx.AsyncClient in this process, closed loop (next request once answered)",
            "search_seconds": args.search_seconds,
            "chat_seconds": args.chat_seconds,
        },
        "levels": levels,
        "http_overhead": overhead,
    }
    out = write_results(args.out, payload, load_before)
    headers = ["endpoint", "clients", "req/s", "p50 ms", "p95 ms", "n", "failed", "unfinished", "load after"]
    rows = [
        [r["endpoint"], r["clients"], r["requests_per_s"], r.get("p50_ms"), r.get("p95_ms"), r["completed"],
         sum(r["failed"].values()), r["unfinished"], " ".join(str(x) for x in r["load_average_after"])]
        for r in levels
    ]  # fmt: skip
    print(format_table(headers, rows))
    for kind, row in overhead.items():
        print(
            f"HTTP overhead, {kind}: p50 {row['http']['p50_ms']} ms over HTTP vs "
            f"{row['direct']['p50_ms']} ms in-process = {row['ratio_p50']}x ({row['pairs']} pairs)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
