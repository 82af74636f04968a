"""Ray ingest against local ingest of the same files, in one run (``bench/scale.py --part ingest``).

The files: the first ``--files`` HTML pages of the documentation corpus (``--corpus``, from
``../shared/scripts/fetch-doc-corpus.sh``) when it holds that many, else ``--files`` Markdown files
written from SQuAD dev passages (``../shared/data/squad-dev``: two consecutive passages of one
article each, under their title), so the run needs no download. Then, one after the other in this
process, with the model cache warm (the ONNX export is not timed) and the default int8 embedder:

1. local: :func:`indexes.pipeline.ingest` into a fresh index (one process, all cores);
2. Ray: ``ray.init(num_cpus=--ray-cpus)`` (timed apart), then :func:`indexes.ray_ingest.ingest`
   into another fresh index (``--actors`` embedding actors of one CPU each, one thread each; the
   other CPUs load and chunk), then again on the unchanged files (skipped on the driver).

Reported: docs/s and chunks/s of each, Ray's overhead on this machine (seconds and ratio), where
the Ray run spent its time (driver hashing, cluster, merge), the measured per-actor embedding
rate, and from it the projected throughput with N workers of one actor each:
``files / (serial + fixed + files / (N * per-actor docs/s))``, where ``serial`` is the driver's
hashing and merge and ``fixed`` the cluster time not spent embedding (actor start, scheduling,
load and chunk, Parquet), both held constant: an upper bound on what more workers buy.

    python bench/scale_ingest.py --files 40                 # a check, about a minute
    python bench/scale_ingest.py                            # the 500-file run (see bench/README.md)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    load_average,
    peak_rss_mb,
    timer,
    warn_if_busy,
    write_results,
)

SQUAD = REPO_ROOT.parent / "shared" / "data" / "squad-dev" / "passages.jsonl"
PASSAGES_PER_FILE = 2
WORKERS = (1, 2, 4, 8, 16, 32, 64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options (``bench/scale.py`` passes the ones it does not know on)."""
    from rag_app.settings import default_cache_dir

    add = parser.add_argument
    add("--files", type=int, default=500, help="files ingested by both (default 500)")
    add("--corpus", type=Path, default=REPO_ROOT.parent / "doc-corpus", help="fetch-doc-corpus.sh folder")
    add(
        "--source", choices=("auto", "corpus", "squad"), default="auto", help="auto: the corpus if big enough"
    )
    add("--ray-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    add("--actors", type=int, default=None, help="embedding actors (default: Ray CPUs less one)")
    add("--work", type=Path, default=WORK_DIR / "scale-ingest", help="files and scratch indexes")
    add("--cache-dir", type=Path, default=default_cache_dir(), help="rag-app model cache (warm)")
    add("--ingest-out", type=Path, default=RESULTS_DIR / "scale-ingest.json", help="results JSON")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def make_files(args: argparse.Namespace) -> tuple[list[Path], dict[str, Any]]:
    """The files both ingests read, and where they came from."""
    html = sorted(args.corpus.rglob("*.html")) if args.corpus.is_dir() else []
    if args.source == "corpus" or (args.source == "auto" and len(html) >= args.files):
        if len(html) < args.files:
            raise SystemExit(f"{args.corpus} holds {len(html)} HTML files, fewer than --files {args.files}")
        files = html[: args.files]
        return files, {"source": "doc-corpus", "corpus": str(args.corpus), "first": str(files[0])}
    passages = [json.loads(line) for line in SQUAD.read_text(encoding="utf-8").splitlines() if line]
    by_title: dict[str, list[dict[str, Any]]] = {}
    for passage in passages:
        by_title.setdefault(passage["title"], []).append(passage)
    groups = [
        items[i : i + PASSAGES_PER_FILE]
        for items in by_title.values()
        for i in range(0, len(items), PASSAGES_PER_FILE)
    ]
    if len(groups) < args.files:
        raise SystemExit(
            f"SQuAD dev makes {len(groups)} files of {PASSAGES_PER_FILE} passages, not {args.files}"
        )
    folder = args.work / f"squad-{args.files}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = []
    for number, group in enumerate(groups[: args.files]):
        path = folder / f"{number:04d}-{group[0]['_id']}.md"
        body = "\n\n".join(p["text"] for p in group)
        path.write_text(f"# {group[0]['title']}\n\n{body}\n", encoding="utf-8")
        files.append(path)
    return files, {"source": "squad-dev", "passages_per_file": PASSAGES_PER_FILE, "folder": str(folder)}


def _figures(report: Any, seconds: float) -> dict[str, Any]:
    return {
        "files_ingested": report.files_ingested,
        "files_unchanged": report.files_unchanged,
        "files_failed": len(report.files_failed),
        "chunks": report.chunks_added,
        "seconds": round(seconds, 2),
        "docs_per_s": round(report.files_ingested / seconds, 2) if seconds else None,
        "chunks_per_s": round(report.chunks_added / seconds, 2) if seconds else None,
    }


def _same_index(a: Path, b: Path) -> dict[str, Any]:
    """Whether two indexes hold the same chunk ids and texts, and how far apart their vectors are."""
    from rag_app.store.docstore import DOCSTORE_NAME, Docstore

    rows = []
    for folder in (a, b):
        store = Docstore(folder / DOCSTORE_NAME, readonly=True)
        rows.append(store.conn.execute("SELECT id, text, vector FROM chunks ORDER BY id").fetchall())
        store.close()
    same = [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]]
    diff = None
    if same and rows[0]:
        va, vb = (np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rs]) for rs in rows)
        diff = float(np.abs(va - vb).max())
    return {"same_chunk_ids_and_texts": same, "max_abs_vector_difference": diff}


def projection(files: int, stats: Any) -> dict[str, Any]:
    """Throughput with N workers of one actor, from the measured per-actor rate (see the docstring)."""
    per_actor = files / stats.embed_seconds if stats.embed_seconds else 0.0
    serial = stats.driver_seconds + stats.merge_seconds
    fixed = max(0.0, stats.cluster_seconds - stats.embed_seconds / max(1, stats.actors))
    rows = []
    for workers in WORKERS:
        seconds = serial + fixed + (files / (workers * per_actor) if per_actor else 0.0)
        rows.append(
            {"workers": workers, "seconds": round(seconds, 1), "docs_per_s": round(files / seconds, 2)}
        )
    return {
        "per_actor_docs_per_s": round(per_actor, 2),
        "per_actor_chunks_per_s": round(stats.chunks_embedded / stats.embed_seconds, 2)
        if stats.embed_seconds
        else None,
        "serial_seconds": round(serial, 2),
        "fixed_cluster_seconds": round(fixed, 2),
        "ceiling_docs_per_s": round(files / (serial + fixed), 2) if serial + fixed else None,
        "workers": rows,
    }


def run(args: argparse.Namespace | Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison, write ``--ingest-out`` with :func:`write_results`, return what it holds."""
    if not isinstance(args, argparse.Namespace):
        args = parse_args(args)
    import ray

    from indexes import pipeline, ray_ingest
    from rag_app.embeddings import create_embedder
    from rag_app.settings import Settings

    load_before = warn_if_busy("start")
    args.work.mkdir(parents=True, exist_ok=True)
    files, origin = make_files(args)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"{len(files)} files ({origin['source']}), {size_mb:.2f} MB", flush=True)
    settings = Settings(cache_dir=args.cache_dir)
    create_embedder(settings).embed_query("warm the model cache")  # the ONNX export is not timed

    runs: dict[str, Any] = {}
    local_index, ray_index = args.work / "index-local", args.work / "index-ray"
    for folder in (local_index, ray_index):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"local: running (load average {load_average()[0]}) ...", flush=True)
    with timer() as elapsed:
        report = pipeline.ingest(files, local_index, settings, create_embedder(settings))
    runs["local"] = _figures(report, elapsed()) | {"load_average_after": load_average()}

    print(f"ray: starting a local Ray of {args.ray_cpus} CPUs ...", flush=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline
    with timer() as started:
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    options = ray_ingest.RayOptions(actors=args.actors)
    try:
        stats = ray_ingest.RayStats()
        print(f"ray: running (load average {load_average()[0]}) ...", flush=True)
        with timer() as elapsed:
            report = ray_ingest.ingest(
                files, ray_index, settings, create_embedder(settings), options, stats=stats
            )
        runs["ray"] = _figures(report, elapsed()) | {
            "ray_start_seconds": round(started(), 2),
            "docs_per_s_with_ray_start": round(report.files_ingested / (elapsed() + started()), 2),
            "actors": stats.actors,
            "stages_seconds": {
                "driver_discover_hash": round(stats.driver_seconds, 2),
                "cluster_load_chunk_embed_write": round(stats.cluster_seconds, 2),
                "merge_commit": round(stats.merge_seconds, 2),
                "actors_embedding_summed": round(stats.embed_seconds, 2),
            },
            "load_average_after": load_average(),
        }
        again = ray_ingest.RayStats()
        with timer() as elapsed:
            report = ray_ingest.ingest(
                files, ray_index, settings, create_embedder(settings), options, stats=again
            )
        runs["ray re-ingest (unchanged)"] = _figures(report, elapsed()) | {
            "files_sent_to_cluster": again.files_sent
        }
    finally:
        ray.shutdown()

    local, remote = runs["local"], runs["ray"]
    overhead = {
        "extra_seconds": round(remote["seconds"] - local["seconds"], 2),
        "ray_over_local_seconds": round(remote["seconds"] / local["seconds"], 2),
        "extra_seconds_with_ray_start": round(
            remote["seconds"] + remote["ray_start_seconds"] - local["seconds"], 2
        ),
    }
    result = {
        "part": "ingest",
        "files": {"count": len(files), "mb": round(size_mb, 2), **origin},
        "settings": {
            "embedder": "all-MiniLM-L6-v2 ONNX int8",
            "ray_cpus": args.ray_cpus,
            "actors": stats.actors,
        },
        "runs": runs,
        "ray_overhead": overhead,
        "index_equal": _same_index(local_index, ray_index),
        "projection": projection(remote["files_ingested"], stats),
        "peak_rss_mb": peak_rss_mb(),
    }
    path = write_results(args.ingest_out, result, load_before)
    print_result(result)
    print(f"wrote {path}")
    return result


def print_result(result: dict[str, Any]) -> None:
    keys = ("files_ingested", "files_unchanged", "chunks", "seconds", "docs_per_s", "chunks_per_s")
    print(
        format_table(
            ["run", *keys], [[name, *(r.get(k) for k in keys)] for name, r in result["runs"].items()]
        )
    )
    ray_run = result["runs"]["ray"]
    print(f"Ray start {ray_run['ray_start_seconds']} s; stages (s): {ray_run['stages_seconds']}")
    print(f"Ray overhead: {result['ray_overhead']}; {result['index_equal']}")
    proj = result["projection"]
    print(
        f"per actor: {proj['per_actor_docs_per_s']} docs/s ({proj['per_actor_chunks_per_s']} chunks/s); "
        f"serial {proj['serial_seconds']} s, fixed cluster {proj['fixed_cluster_seconds']} s, "
        f"ceiling {proj['ceiling_docs_per_s']} docs/s"
    )
    print(format_table(["workers", "seconds", "docs/s"], [list(r.values()) for r in proj["workers"]]))


if __name__ == "__main__":
    started = time.perf_counter()
    run(sys.argv[1:])
    print(f"{time.perf_counter() - started:.0f} s in all")
