"""Scale: vector indexes at a million vectors (``--part vectors``) and Ray ingest (``--part ingest``).

**Vectors.** ``--vectors`` vectors of 384 dims (default 1,000,000), searched by inner product:

- *real*: the packaged all-MiniLM-L6-v2 (ONNX int8, rag-app's default embedder) embeds chunks of
  the documentation corpus (``--corpus``, files in a fixed shuffled order, rag-app's loaders and
  chunker at 256/32 tokens) for ``--embed-minutes``; cached in ``bench/.work/scale/`` (``--rebuild``
  embeds again). ``--queries`` of them, drawn at random, are held out as the queries.
- *drawn*: the rest, from a Gaussian mixture fitted to the real ones: k-means (``--clusters``, 64)
  on the real base vectors, then per cluster its mean and full covariance (shrunk 10 % toward its
  diagonal, so a small cluster still gives a positive definite matrix); a drawn vector picks a
  cluster by its share of the real vectors, samples ``mean + L z`` and is normalised to unit length
  like the real ones. Neighbourhoods are thus as clustered as real MiniLM embeddings, not uniform.

Every kind is built through rag-app's own backends (``rag_app.store.vectors``) with the parameters
``auto`` picks for the size, except where the label says otherwise, and searched one query per
call through ``VectorIndex.search`` as the retriever does. ``refine`` re-scores against a real
SQLite docstore holding the float vectors (``--refine-source memmap``: a file on disk instead).

- build time (train + add), memory in bytes per vector (the serialized index: codes, ids, lists,
  graph; what ``read_index`` holds in RAM; the docstore's float copy is on disk for every kind);
- recall@10 against exact search (flat, all vectors);
- query p50/p95 at k = 10 and 100, single-threaded (one client) and with both cores (two client
  threads issuing queries at once; FAISS runs each single query on one thread);
- an nprobe sweep of IVF-PQ with refine (recall and latency against the lists searched);
- the same through Milvus lite: ``rag_app.store.milvus.connect`` when that module works, else
  ``pymilvus.MilvusClient`` directly (the JSON says which), with milvus-lite's index;
- extrapolation to 10M and 100M vectors from the measured per-vector costs, and a recommendation.

    python bench/scale.py --part vectors --vectors 50000 --queries 200 --embed-minutes 1  # a check
    python bench/scale.py --part vectors                      # the 1M run (see bench/README.md)
    python bench/scale.py --part ingest ...                   # bench/scale_ingest.py's run(argv)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    latency_summary,
    load_average,
    peak_rss_mb,
    timer,
    warn_if_busy,
    write_results,
)

from rag_app.store import vectors as vec

SCALE_DIR = WORK_DIR / "scale"
DIM = 384
WARMUP = 10
TARGET = {"recall_at_10": 0.90, "memory_fraction_of_flat": 1 / 8, "p50_ms": 5.0}
"""IVF-PQ with refine, from issue 16."""
SIZES = (1_000_000, 10_000_000, 100_000_000)
RAM_BUDGET_GB = 64.0
"""The memory a single serving machine is assumed to have for the recommendation."""
Search = Callable[[np.ndarray, int], list[tuple[int, float]]]


@dataclass(frozen=True)
class Config:
    """One index to build and measure."""

    label: str
    kind: str
    """A kind of ``VECTOR_INDEXES``, or ``hnsw-pq`` (HNSW over PQ codes, measured here only)."""
    overrides: dict[str, Any] = field(default_factory=dict)


CONFIGS = (
    Config("flat", "flat"),
    Config("hnsw", "hnsw"),
    Config("ivf-flat", "ivf"),
    Config("ivfpq", "ivfpq", {"refine": 0}),
    Config("ivfpq+refine", "ivfpq", {"refine": 8}),
    Config("opq-ivfpq+refine", "opq-ivfpq", {"refine": 8}),
    Config("hnsw-pq+refine", "hnsw-pq", {"refine": 8}),
)


# -- the vectors -------------------------------------------------------------------------------
def real_embeddings(corpus: Path, minutes: float, rebuild: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """MiniLM embeddings of corpus chunks for ``minutes`` (cached); with how they were made."""
    cache = SCALE_DIR / "real.npy"
    if cache.is_file() and not rebuild:
        real = np.load(cache)
        return real, {"vectors": len(real), "cached": True, "file": str(cache)}
    from indexes.chunking import Chunker
    from indexes.loaders import load_document
    from rag_app.embeddings import create_embedder
    from rag_app.errors import DocumentError
    from rag_app.settings import Settings

    if not corpus.is_dir():
        raise SystemExit(f"no corpus at {corpus}: ../shared/scripts/fetch-doc-corpus.sh {corpus}")
    settings = Settings()
    embedder = create_embedder(settings)
    chunker = Chunker(embedder.tokenizer, min(256, embedder.max_tokens), 32)
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in {".html", ".pdf", ".txt"})
    random.Random(0).shuffle(files)
    parts: list[np.ndarray] = []
    seen = 0
    deadline = time.monotonic() + minutes * 60
    with timer() as elapsed:
        for path in files:
            if time.monotonic() > deadline:
                break
            try:
                chunks = chunker.chunk(load_document(path))
            except DocumentError:
                continue
            if chunks:
                parts.append(embedder.embed_documents([c.text for c in chunks]))
                seen += 1
    real = np.concatenate(parts).astype(np.float32)
    SCALE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cache, real)
    info = {
        "vectors": len(real),
        "files": seen,
        "seconds": round(elapsed(), 1),
        "chunks_per_s": round(len(real) / elapsed(), 1),
        "embedder": embedder.model_id,
        "cached": False,
        "file": str(cache),
    }
    return real, info


@dataclass
class Mixture:
    """A Gaussian mixture fitted to unit vectors: per cluster weight, mean and Cholesky factor."""

    weights: np.ndarray
    means: np.ndarray
    factors: np.ndarray

    @classmethod
    def fit(cls, real: np.ndarray, clusters: int, shrink: float = 0.1) -> Mixture:
        import faiss

        clusters = max(1, min(clusters, len(real) // 20))
        km = faiss.Kmeans(real.shape[1], clusters, niter=20, seed=1, spherical=True)
        km.train(real)
        _, assign = km.index.search(real, 1)
        weights, means, factors = [], [], []
        for c in range(clusters):
            members = real[assign[:, 0] == c]
            if len(members) < 2:
                continue
            cov = np.cov(members, rowvar=False)
            cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov)) + 1e-6 * np.eye(real.shape[1])
            weights.append(len(members))
            means.append(members.mean(axis=0))
            factors.append(np.linalg.cholesky(cov))
        w = np.asarray(weights, dtype=np.float64)
        return cls(w / w.sum(), np.asarray(means, np.float32), np.asarray(factors, np.float32))

    def draw(self, n: int, seed: int) -> np.ndarray:
        """``n`` unit vectors from the mixture."""
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        out = np.empty((n, self.means.shape[1]), dtype=np.float32)
        for c in np.unique(which):
            rows = np.flatnonzero(which == c)
            z = rng.standard_normal((len(rows), self.means.shape[1])).astype(np.float32)
            out[rows] = self.means[c] + z @ self.factors[c].T
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def make_dataset(args: argparse.Namespace) -> tuple[np.memmap, np.ndarray, dict[str, Any]]:
    """The base vectors (a file under bench/.work/scale, memory-mapped), the queries, and how."""
    real, real_info = real_embeddings(args.corpus, args.embed_minutes, args.rebuild)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real))
    n_queries = min(args.queries, len(real) // 2)
    queries = real[order[:n_queries]]
    real_base = real[order[n_queries:]][: args.vectors]
    with timer() as fit_time:
        mixture = Mixture.fit(real_base, args.clusters)
    path = SCALE_DIR / f"base-{args.vectors}.f32"
    base = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.vectors, DIM))
    base[: len(real_base)] = real_base
    with timer() as draw_time:
        for start in range(len(real_base), args.vectors, 200_000):
            stop = min(args.vectors, start + 200_000)
            base[start:stop] = mixture.draw(stop - start, seed=start)
    base.flush()
    info = {
        "vectors": args.vectors,
        "dimension": DIM,
        "real": real_info | {"in_base": len(real_base)},
        "queries": n_queries,
        "queries_from": "held-out real embeddings",
        "drawn": args.vectors - len(real_base),
        "mixture": {
            "clusters": len(mixture.weights),
            "fit_seconds": round(fit_time(), 1),
            "draw_seconds": round(draw_time(), 1),
        },
    }
    return base, queries, info


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int = 100) -> np.ndarray:
    """Exact top-``k`` ids of every query (batched flat search on all cores)."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    truth = np.empty((len(queries), k), dtype=np.int64)
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(base), 200_000):
        index.reset()
        index.add(np.ascontiguousarray(base[start : start + 200_000]))
        scores, ids = index.search(queries, k)
        both_s = np.concatenate([best, scores], axis=1)
        both_i = np.concatenate([truth, ids + start], axis=1)
        top = np.argsort(-both_s, axis=1)[:, :k]
        best = np.take_along_axis(both_s, top, axis=1)
        truth = np.take_along_axis(both_i, top, axis=1)
    return truth


# -- refine's source of float vectors ----------------------------------------------------------
def sqlite_docstore(base: np.ndarray, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A real rag-app docstore holding ``base`` as chunk vectors; its ``vectors_for`` as the source.

    Chunk ids are the row numbers; one document holds them all (texts empty: only vectors matter).
    """
    from rag_app.store.docstore import Docstore

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db = Docstore(folder / "docstore.sqlite")
    with db.transaction():
        db.conn.execute(
            "INSERT INTO documents (id, source, content_hash, format, size, mtime, metadata, n_chunks) "
            "VALUES (1, 'bench', '', 'txt', 0, 0, '{}', ?)",
            (len(base),),
        )
        for start in range(0, len(base), 50_000):
            rows = (
                (i, 1, i, "", 0, 0, None, "[]", str(i), base[i].tobytes())
                for i in range(start, min(len(base), start + 50_000))
            )
            db.conn.executemany(
                'INSERT INTO chunks (id, doc_id, ordinal, text, start, "end", page, heading_path, '
                "text_hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    local = threading.local()
    path = folder / "docstore.sqlite"

    def source(ids: np.ndarray) -> np.ndarray:
        conn = getattr(local, "db", None)
        if conn is None:
            conn = local.db = Docstore(path)
        return conn.vectors_for(ids.tolist(), DIM)

    return source


def memmap_source(base: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def source(ids: np.ndarray) -> np.ndarray:
        return np.asarray(base[ids])

    return source


# -- building and measuring --------------------------------------------------------------------
def batches(base: np.ndarray, size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(base), size):
        stop = min(len(base), start + size)
        yield np.arange(start, stop, dtype=np.int64), np.ascontiguousarray(base[start:stop])


class HnswPq:
    """HNSW over PQ codes (``IndexHNSWPQ``), measured to see whether it earns a backend."""

    def __init__(self, base: np.ndarray, params: dict[str, Any]) -> None:
        import faiss

        self.params = params
        train = np.ascontiguousarray(base[: params["train_size"]])
        inner = faiss.IndexHNSWPQ(DIM, params["pq_m"], 32)
        inner.hnsw.efConstruction = 80
        inner.train(train)
        self.index = faiss.IndexIDMap2(inner)
        for ids, vectors in batches(base):
            self.index.add_with_ids(vectors, ids)
        inner.hnsw.efSearch = 128
        self.vectors: Callable[[np.ndarray], np.ndarray] | None = None

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        import faiss

        q = query.reshape(1, -1)
        saved = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            _, ids = self.index.search(q, k * self.params["refine"])
        finally:
            faiss.omp_set_num_threads(saved)
        found = ids[0][ids[0] >= 0]
        assert self.vectors is not None
        scores = self.vectors(found) @ query
        order = np.argsort(-scores)[:k]
        return [(int(found[j]), float(scores[j])) for j in order]


def build(config: Config, base: np.ndarray, threads: int) -> tuple[Any, dict[str, Any], float]:
    """The index of ``config`` over ``base`` (FAISS on ``threads`` OpenMP threads), its parameters,
    and seconds to build it."""
    import faiss

    faiss.omp_set_num_threads(threads)
    n = len(base)
    with timer() as elapsed:
        if config.kind == "hnsw-pq":
            params = vec.PqIndex.default_params(n) | {"pq_m": DIM // 8} | config.overrides
            index: Any = HnswPq(base, params)
        else:
            spec = vec.choose_spec(n, config.kind, config.overrides)
            index = vec.build_index(spec, DIM, batches(base))
            params = vec.recorded_params(index, spec)
    return index, params, elapsed()


def memory_bytes(index: Any) -> int:
    """Bytes of the serialized FAISS index: what it holds in RAM once read."""
    import faiss

    return int(faiss.serialize_index(index.index).nbytes)


def timed_queries(
    search: Search, queries: np.ndarray, k: int, threads: int
) -> tuple[list[float], float, list[list[int]]]:
    """Per-query seconds, wall seconds and the ids found, with ``threads`` clients at once."""
    for q in queries[:WARMUP]:
        search(q, k)
    seconds: list[float] = [0.0] * len(queries)
    found: list[list[int]] = [[] for _ in queries]

    def client(rows: range) -> None:
        for i in rows:
            start = time.perf_counter()
            hits = search(queries[i], k)
            seconds[i] = time.perf_counter() - start
            found[i] = [h for h, _ in hits]

    workers = [
        threading.Thread(target=client, args=(range(t, len(queries), threads),)) for t in range(threads)
    ]
    with timer() as wall:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return seconds, wall(), found


def recall_at(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / (k * len(found)), 4)


def measure(search: Search, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """recall@10 and latency at k = 10 / 100 with one and two client threads."""
    out: dict[str, Any] = {}
    for k in (10, 100):
        for threads in (1, 2):
            seconds, wall, found = timed_queries(search, queries, k, threads)
            out[f"k{k}_t{threads}"] = latency_summary(seconds) | {"qps": round(len(queries) / wall, 1)}
            if k == 10 and threads == 1:
                out["recall_at_10"] = recall_at(found, truth, 10)
            if k == 100 and threads == 1:
                out["recall_at_100"] = recall_at(found, truth, 100)
    return out


def nprobe_sweep(index: vec.PqIndex, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """recall@10 and p50 (k = 10, one client) of an IVF-PQ index for growing nprobe."""
    nlist = int(index.params["nlist"])
    rows = []
    saved = dict(index.params)
    for nprobe in (4, 8, 16, 32, 64, 128, 256, 512):
        if nprobe > nlist:
            break
        index.configure({"nprobe": nprobe}, index.vectors)
        seconds, _, found = timed_queries(index.search, queries, 10, 1)
        rows.append(
            {
                "nprobe": nprobe,
                "scanned_fraction": nprobe / nlist,
                "recall_at_10": recall_at(found, truth, 10),
            }
            | latency_summary(seconds)
        )
    index.configure(saved, index.vectors)
    return rows


REFINE_FACTORS = (2, 4, 8, 16)


def refine_sweep(index: vec.PqIndex, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """recall@10 and p50 (k = 10, one client) of IVF-PQ for growing ``refine`` (candidates re-scored
    = refine x k), at the default nprobe and at four times it."""
    saved = dict(index.params)
    nlist, default_nprobe = int(saved["nlist"]), int(saved["nprobe"])
    rows = []
    for nprobe in dict.fromkeys((default_nprobe, min(nlist, 4 * default_nprobe))):
        for refine in REFINE_FACTORS:
            index.configure({"nprobe": nprobe, "refine": refine}, index.vectors)
            seconds, _, found = timed_queries(index.search, queries, 10, 1)
            rows.append(
                {"nprobe": nprobe, "refine": refine, "recall_at_10": recall_at(found, truth, 10)}
                | latency_summary(seconds)
            )
    index.configure(saved, index.vectors)
    return rows


def milvus_row(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path, index_type: str
) -> dict[str, Any]:
    """The same measurements through Milvus lite (rag-app's backend when it works, else pymilvus),
    on a collection of ``index_type`` (a Milvus index: FLAT, IVF_FLAT, HNSW)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    uri = str(folder / "bench.db")
    how, index, close = _milvus(uri, index_type)
    with timer() as elapsed:
        for ids, vectors in batches(base, 10_000):
            index.add(ids, vectors)
        index.save(folder / "vectors.json")  # seals the segments (a flush), as an ingest commit does
    row: dict[str, Any] = {
        "label": f"milvus-lite ({index_type})",
        "client": how,
        "vectors": len(base),
        "queries": len(queries),
        "build_s": round(elapsed(), 1),
    }
    row["disk_bytes_per_vector"] = round(_folder_bytes(folder) / len(base), 1)
    row["server_rss_mb"] = _children_rss_mb()
    row |= measure(lambda q, k: index.search(q, k), queries, truth)
    close()
    return row


def _milvus(uri: str, index_type: str) -> tuple[str, Any, Callable[[], None]]:
    from rag_app.store.milvus import connect

    index = connect(uri, "bench", DIM, index_type=index_type)
    return "rag_app.store.milvus.connect", index, index.close


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _children_rss_mb() -> float:
    import psutil

    kids = psutil.Process().children(recursive=True)
    return round(sum(k.memory_info().rss for k in kids) / 2**20, 1)


# -- extrapolation -----------------------------------------------------------------------------
def extrapolate(rows: list[dict[str, Any]], sweep: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Memory and p50 (k = 10, one client) at 10M and 100M vectors from the per-vector costs.

    Memory: bytes per vector x vectors. Latency: flat grows with the vectors; HNSW with their
    logarithm (hops); IVF kinds with the codes scanned, ``nprobe / nlist`` of the vectors at the
    same recall (lists grow like sqrt(n), and the same fraction of them is searched), priced by the
    nprobe sweep's least-squares fit of p50 against codes scanned; refine adds its measured cost.
    """
    per_code = fixed = None
    if len(sweep) >= 2:
        scanned = np.array([r["scanned_fraction"] * n for r in sweep])
        p50 = np.array([r["p50_ms"] for r in sweep])
        per_code, fixed = np.polyfit(scanned, p50, 1)
        per_code, fixed = max(0.0, float(per_code)), max(0.0, float(fixed))  # a noisy sweep: no negatives
    out = []
    for row in rows:
        if "memory_bytes_per_vector" not in row:
            continue
        p50 = row["k10_t1"]["p50_ms"]
        for size in SIZES:
            scale = size / n
            if row["kind"] == "flat":
                predicted = p50 * scale
            elif row["kind"] in ("hnsw", "hnsw-pq"):
                predicted = p50 * math.log(size) / math.log(n)
            elif per_code is not None and fixed is not None:
                fraction = row["params"]["nprobe"] / row["params"]["nlist"]
                extra = p50 - (fixed + per_code * fraction * n)  # what this row adds (refine, lists)
                predicted = max(p50, fixed + per_code * fraction * size + max(0.0, extra))
            else:
                predicted = p50 * scale
            out.append(
                {
                    "label": row["label"],
                    "vectors": size,
                    "memory_gb": round(row["memory_bytes_per_vector"] * size / 1e9, 2),
                    "p50_ms": round(float(predicted), 2),
                    "recall_at_10": row["recall_at_10"],
                    "measured": size == n,
                }
            )
    return out


def recommend(projection: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: the least memory with recall@10 >= 0.9 and p50 <= 5 ms within the RAM budget."""
    picks = []
    for size in SIZES:
        rows = [r for r in projection if r["vectors"] == size]
        fits = [
            r
            for r in rows
            if r["recall_at_10"] >= TARGET["recall_at_10"]
            and r["p50_ms"] <= TARGET["p50_ms"]
            and r["memory_gb"] <= RAM_BUDGET_GB
        ]
        if fits:
            best = min(fits, key=lambda r: (r["memory_gb"], r["p50_ms"]))
            picks.append(
                {"vectors": size, "pick": best["label"], "why": "least memory meeting the targets"} | best
            )
        else:
            fast = [
                r
                for r in rows
                if r["recall_at_10"] >= TARGET["recall_at_10"] and r["memory_gb"] <= RAM_BUDGET_GB
            ]
            best = min(fast or rows, key=lambda r: r["p50_ms"])
            picks.append(
                {
                    "vectors": size,
                    "pick": best["label"],
                    "why": "no setting meets all targets on one CPU machine: the fastest that fits; "
                    "shard (Milvus cluster) or search on GPU for the latency",
                }
                | best
            )
    return picks


# -- the parts ---------------------------------------------------------------------------------
def run_vectors(args: argparse.Namespace) -> dict[str, Any]:
    base, queries, data_info = make_dataset(args)
    print(
        f"{len(base):,} vectors ({data_info['real']['in_base']:,} real), {len(queries)} queries", flush=True
    )
    with timer() as gt_time:
        truth = ground_truth(base, queries)
    refine_source = (
        sqlite_docstore(base, SCALE_DIR / "docstore")
        if args.refine_source == "sqlite"
        else memmap_source(base)
    )
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    refines: list[dict[str, Any]] = []
    flat_bytes = None
    wanted = set(args.configs.split(",")) if args.configs else None
    for config in CONFIGS:
        if wanted is not None and config.label not in wanted:
            continue
        print(f"building {config.label} ...", flush=True)
        index, params, seconds = build(config, base, args.build_threads or len(os.sched_getaffinity(0)))
        if isinstance(index, (vec.PqIndex, HnswPq)):
            if isinstance(index, vec.PqIndex):
                vec.attach(index, params, refine_source)
            else:
                index.vectors = refine_source
        row: dict[str, Any] = {"label": config.label, "kind": config.kind, "params": params}
        row["build_s"] = round(seconds, 1)
        row["memory_bytes_per_vector"] = round(memory_bytes(index) / len(base), 1)
        if config.kind == "flat":
            flat_bytes = row["memory_bytes_per_vector"]
        row |= measure(index.search, queries, truth)
        if flat_bytes:
            row["memory_fraction_of_flat"] = round(row["memory_bytes_per_vector"] / flat_bytes, 4)
        if config.label == "ivfpq+refine" and isinstance(index, vec.PqIndex):
            sweep = nprobe_sweep(index, queries, truth)
            refines = refine_sweep(index, queries, truth)
        rows.append(row)
        print(
            f"  {config.label}: build {row['build_s']} s, {row['memory_bytes_per_vector']} B/vector, "
            f"recall@10 {row['recall_at_10']}, p50 {row['k10_t1']['p50_ms']} ms",
            flush=True,
        )
        del index
    if not args.skip_milvus:
        # milvus-lite searches FLAT (a brute-force scan: 0.23 s a query at 100k), so it is measured
        # on the first --milvus-vectors of the base with --milvus-queries, against their own truth
        m, q = min(args.milvus_vectors, len(base)), min(args.milvus_queries, len(queries))
        sub_truth = truth if m == len(base) else ground_truth(base[:m], queries[:q])
        for index_type in args.milvus_index.split(","):
            print(f"milvus lite ({index_type}, {m:,} vectors, {q} queries) ...", flush=True)
            try:
                rows.append(
                    milvus_row(base[:m], queries[:q], sub_truth[:q], SCALE_DIR / "milvus", index_type)
                )
            except Exception as exc:  # report it in the results rather than lose the FAISS rows
                rows.append({"label": f"milvus-lite ({index_type})", "error": f"{type(exc).__name__}: {exc}"})
    projection = extrapolate(rows, sweep, len(base))
    target_row = next((r for r in rows if r["label"] == "ivfpq+refine"), None)
    verdict = None
    if target_row is not None:
        verdict = {
            "recall_at_10": target_row["recall_at_10"],
            "memory_fraction_of_flat": target_row.get("memory_fraction_of_flat"),
            "p50_ms": target_row["k10_t1"]["p50_ms"],
            "met": target_row["recall_at_10"] >= TARGET["recall_at_10"]
            and (target_row.get("memory_fraction_of_flat") or 1) <= TARGET["memory_fraction_of_flat"]
            and target_row["k10_t1"]["p50_ms"] <= TARGET["p50_ms"],
            "met_by_refine_sweep": [
                {"nprobe": r["nprobe"], "refine": r["refine"]}
                for r in refines
                if r["recall_at_10"] >= TARGET["recall_at_10"] and r["p50_ms"] <= TARGET["p50_ms"]
            ],
        }
    return {
        "data": data_info,
        "ground_truth_s": round(gt_time(), 1),
        "refine_source": args.refine_source,
        "rows": rows,
        "nprobe_sweep": sweep,
        "refine_sweep": refines,
        "target": TARGET,
        "target_verdict": verdict,
        "projection": projection,
        "recommendation": recommend(projection),
        "peak_rss_mb": peak_rss_mb(),
    }


def print_vectors(result: dict[str, Any]) -> None:
    headers = [
        "index",
        "build s",
        "B/vector",
        "recall@10",
        "p50 k10",
        "p95 k10",
        "p50 k100",
        "p50 k10 2thr",
        "qps 2thr",
    ]
    table = []
    for r in result["rows"]:
        if "error" in r:
            table.append([r["label"], r["error"], None, None, None, None, None, None, None])
            continue
        mem = r.get("memory_bytes_per_vector", r.get("disk_bytes_per_vector"))
        table.append(
            [
                r["label"],
                r["build_s"],
                mem,
                r["recall_at_10"],
                r["k10_t1"]["p50_ms"],
                r["k10_t1"]["p95_ms"],
                r["k100_t1"]["p50_ms"],
                r["k10_t2"]["p50_ms"],
                r["k10_t2"]["qps"],
            ]
        )
    print(format_table(headers, table))
    if result["nprobe_sweep"]:
        print("\nIVF-PQ + refine, nprobe sweep (k = 10, one client):")
        print(
            format_table(
                ["nprobe", "recall@10", "p50 ms", "p95 ms"],
                [[s["nprobe"], s["recall_at_10"], s["p50_ms"], s["p95_ms"]] for s in result["nprobe_sweep"]],
            )
        )
    if result.get("refine_sweep"):
        print("\nIVF-PQ, refine sweep (k = 10, one client):")
        print(
            format_table(
                ["nprobe", "refine", "recall@10", "p50 ms", "p95 ms"],
                [
                    [s["nprobe"], s["refine"], s["recall_at_10"], s["p50_ms"], s["p95_ms"]]
                    for s in result["refine_sweep"]
                ],
            )
        )
    print("\nprojection (p50 at k = 10, one client):")
    print(
        format_table(
            ["index", "vectors", "memory GB", "p50 ms", "recall@10"],
            [
                [p["label"], f"{p['vectors']:,}", p["memory_gb"], p["p50_ms"], p["recall_at_10"]]
                for p in result["projection"]
            ],
        )
    )
    print("\nrecommendation:")
    print(
        format_table(
            ["vectors", "pick", "memory GB", "p50 ms", "why"],
            [
                [f"{r['vectors']:,}", r["pick"], r["memory_gb"], r["p50_ms"], r["why"]]
                for r in result["recommendation"]
            ],
        )
    )
    if result["target_verdict"]:
        print(f"\ntarget (IVF-PQ + refine): {result['target_verdict']}")


def run_ingest(argv: list[str]) -> int:
    """``bench/scale_ingest.py``'s ``run(argv)`` (its own flags, e.g. ``--files``); exit 2 when that
    script is missing."""
    if not (REPO_ROOT / "bench" / "scale_ingest.py").is_file():
        print("bench/scale_ingest.py is missing: the ingest part cannot run", file=sys.stderr)
        return 2
    from scale_ingest import run

    run(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("vectors", "ingest", "all"), default="vectors")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--embed-minutes", type=float, default=15.0)
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "doc-corpus")
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--refine-source", choices=("sqlite", "memmap"), default="sqlite")
    parser.add_argument("--configs", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--skip-milvus", action="store_true")
    parser.add_argument("--milvus-vectors", type=int, default=100_000, help="base vectors Milvus lite gets")
    parser.add_argument("--milvus-queries", type=int, default=200)
    parser.add_argument("--milvus-index", default="FLAT", help="Milvus index types, comma-separated")
    parser.add_argument(
        "--build-threads",
        type=int,
        default=0,
        help="OpenMP threads for building (default: every core; 1 on a busy machine, where "
        "threads waiting on each other at barriers make training many times slower)",
    )
    parser.add_argument("--rebuild", action="store_true", help="embed the corpus again")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scale-vectors.json")
    args, rest = parser.parse_known_args(argv)
    status = 0
    if args.part in ("vectors", "all"):
        load_before = warn_if_busy("start")
        result = run_vectors(args)
        print_vectors(result)
        path = write_results(args.out, {"part": "vectors", **result}, load_before)
        print(f"\nwrote {path} (load average now {load_average()})")
    if args.part in ("ingest", "all"):
        status = run_ingest(rest)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
