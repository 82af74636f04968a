"""SciFact (BEIR) retrieval: rag-app (hybrid, RRF, dense, BM25) against LlamaIndex and bm25s.

Quality is nDCG@10 and recall@100 on document ids (chunk hits map back to their abstract; the
best-ranked chunk of a document counts), latency is per query after a warm-up of 10 queries.

    python bench/retrieval.py                  # test split; indexes cached under bench/.work/
    python bench/retrieval.py --rebuild        # rebuild both indexes, so ingest speed is measured now
    python bench/retrieval.py --sweep          # tune fusion on the TRAIN queries only, print the best

Tune on train, report on test: ``--sweep`` never looks at the test qrels.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    cached_build,
    format_table,
    ingest_figures,
    latency_summary,
    llamaindex_offline,
    load_average,
    load_qrels,
    minilm_folder,
    model_dimension,
    peak_rss_mb,
    read_jsonl,
    timer,
    warn_if_busy,
    write_results,
)

from eval.retrieval_metrics import Qrels, evaluate
from rag_app.documents import LoadedDocument, Section
from rag_app.rag import RAG
from rag_app.settings import Settings, default_cache_dir

Search = Callable[[str, int], list[str]]
"""(query, k) -> document ids, best first, without repeats."""
WARMUP_QUERIES = 10
LATENCY_K = 100
"""Results asked for in the timed pass: what a user would ask for (``k=100``, ``similarity_top_k=100``)."""
EVAL_K = 200
"""Chunks asked for in the quality pass, so that 100 distinct documents remain for recall@100."""
SWEEP_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SWEEP_RRF_K = (10, 30, 60)
HEADLINE = (
    ("rag-app hybrid (weighted)", "hybrid", "weighted"),
    ("rag-app hybrid (rrf)", "hybrid", "rrf"),
    ("rag-app dense", "dense", None),
    ("rag-app bm25", "bm25", None),
)
"""rag-app systems measured: (name, mode, fusion; None keeps the configured fusion)."""
LLAMA_CHUNK_SIZE, LLAMA_OVERLAP = 256, 32
SETTINGS_RECORDED = ("retrieval", "chunking", "embedding")


# -- measuring ----------------------------------------------------------------------------------
def unique(ids: Sequence[str]) -> list[str]:
    """Document ids in first-seen order (a document's best-ranked chunk counts)."""
    return list(dict.fromkeys(ids))


def run_queries(
    search: Search, queries: list[tuple[str, str]], k: int
) -> tuple[dict[str, list[str]], list[float]]:
    run: dict[str, list[str]] = {}
    seconds: list[float] = []
    for qid, text in queries:
        start = time.perf_counter()
        run[qid] = search(text, k)
        seconds.append(time.perf_counter() - start)
    return run, seconds


def measure(name: str, search: Search, queries: list[tuple[str, str]], qrels: Qrels) -> dict[str, Any]:
    """Warm up, time one pass at ``LATENCY_K``, then score a deeper pass at ``EVAL_K``."""
    for _, text in queries[:WARMUP_QUERIES]:
        search(text, LATENCY_K)
    timed_run, seconds = run_queries(search, queries, LATENCY_K)
    run, _ = run_queries(search, queries, EVAL_K)
    metrics = evaluate(run, qrels)
    latency = latency_summary(seconds)
    result = {**metrics, "latency": latency, "at_k100": evaluate(timed_run, qrels)}
    print(
        f"  {name}: nDCG@10 {metrics['ndcg@10']:.4f}, recall@100 {metrics['recall@100']:.4f}, "
        f"p50 {latency['p50_ms']:.1f} ms",
        flush=True,
    )
    return result


# -- rag-app -----------------------------------------------------------------------------------
def scifact_documents(corpus: list[dict[str, Any]]) -> list[LoadedDocument]:
    return [
        LoadedDocument(
            source=f"scifact:{row['_id']}",
            format="text",
            sections=[
                Section(row["title"], kind="heading"),
                Section(row["text"], heading_path=(row["title"],)),
            ],
        )
        for row in corpus
    ]


def ragapp_index(
    work: Path, settings: Settings, corpus: list[dict[str, Any]], rebuild: bool
) -> tuple[RAG, dict[str, Any]]:
    """Open the cached index, or build it (timed) with ``RAG.add_documents``."""
    from rag_app.embeddings import create_embedder

    index_dir = work / "ragapp-index"
    embedder = create_embedder(settings)
    with timer() as load_s:
        embedder.embed_query("warm up")  # exports the ONNX model on the very first run
    rag = RAG(index_dir, settings, embedder=embedder)

    def build() -> dict[str, Any]:
        shutil.rmtree(index_dir, ignore_errors=True)
        documents = scifact_documents(corpus)
        print(f"rag-app: indexing {len(documents)} abstracts ...", flush=True)
        with timer() as elapsed:
            report = rag.add_documents(documents)
        return ingest_figures(len(documents), report.chunks_added, elapsed())

    info = cached_build(work / "ragapp-ingest.json", index_dir, rebuild, build)
    info["model_load_s"] = round(load_s(), 2)
    return rag, info


def ragapp_search(rag: RAG, mode: str) -> Search:
    def search(query: str, k: int) -> list[str]:
        hits = rag.search(query, k=k, mode=mode)
        return unique([hit.source.removeprefix("scifact:") for hit in hits])

    return search


@contextmanager
def retrieval_overrides(rag: RAG, **values: Any) -> Iterator[None]:
    """Set ``rag.settings.retrieval`` fields for a while (the retriever reads them live)."""
    section = rag.settings.retrieval
    saved = {key: getattr(section, key) for key in values}
    for key, value in values.items():
        setattr(section, key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(section, key, value)


# -- baselines ---------------------------------------------------------------------------------
def llamaindex_index(
    work: Path, corpus: list[dict[str, Any]], rebuild: bool
) -> tuple[Search, dict[str, Any]]:
    """LlamaIndex's default vector pipeline with the same model, chunk budget and documents."""
    folder = minilm_folder()
    with timer() as load_s:
        embed_model = llamaindex_offline(folder)
    import faiss
    from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.faiss import FaissVectorStore

    persist = work / "llamaindex"

    def build() -> dict[str, Any]:
        shutil.rmtree(persist, ignore_errors=True)
        documents = [Document(text=f"{row['title']}\n\n{row['text']}", id_=row["_id"]) for row in corpus]
        print(f"LlamaIndex: indexing {len(documents)} abstracts ...", flush=True)
        with timer() as elapsed:
            store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(model_dimension(folder)))
            index = VectorStoreIndex.from_documents(
                documents,
                storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=embed_model,
                transformations=[SentenceSplitter(chunk_size=LLAMA_CHUNK_SIZE, chunk_overlap=LLAMA_OVERLAP)],
            )
            index.storage_context.persist(persist_dir=str(persist))
        return ingest_figures(len(documents), len(index.docstore.docs), elapsed())

    info = cached_build(work / "llamaindex-ingest.json", persist, rebuild, build)
    store = FaissVectorStore.from_persist_dir(str(persist))
    context = StorageContext.from_defaults(vector_store=store, persist_dir=str(persist))
    index = load_index_from_storage(context, embed_model=embed_model)
    info["model_load_s"] = round(load_s(), 2)
    retrievers = {k: index.as_retriever(similarity_top_k=k) for k in (LATENCY_K, EVAL_K)}

    def search(query: str, k: int) -> list[str]:
        return unique([str(n.node.ref_doc_id) for n in retrievers[k].retrieve(query)])

    return search, info


def bm25s_baseline(corpus: list[dict[str, Any]]) -> tuple[Search, dict[str, Any]]:
    """bm25s on whole abstracts (title + text), stemmed, English stop words: the do-it-yourself pick."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = [row["_id"] for row in corpus]
    with timer() as elapsed:
        texts = [f"{r['title']} {r['text']}" for r in corpus]
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        model = bm25s.BM25()
        model.index(tokens, show_progress=False)
    info = {
        "documents": len(ids),
        "seconds": round(elapsed(), 2),
        "docs_per_s": round(len(ids) / elapsed(), 1),
    }

    def search(query: str, k: int) -> list[str]:
        q = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
        rows, _ = model.retrieve(q, k=min(k, len(ids)), show_progress=False)
        return [ids[int(r)] for r in rows[0]]

    return search, info


# -- sweep ---------------------------------------------------------------------------------------
def sweep(rag: RAG, queries: list[tuple[str, str]], qrels: Qrels) -> dict[str, Any]:
    """Weighted fusion over ``SWEEP_WEIGHTS`` and RRF over ``SWEEP_RRF_K``, scored at ``EVAL_K``."""
    rows: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = [{"fusion": "weighted", "dense_weight": w} for w in SWEEP_WEIGHTS]
    configs += [{"fusion": "rrf", "rrf_k": k} for k in SWEEP_RRF_K]
    for mode in ("dense", "bm25"):
        run, _ = run_queries(ragapp_search(rag, mode), queries, EVAL_K)
        rows.append({"mode": mode, **evaluate(run, qrels)})
    for config in configs:
        with retrieval_overrides(rag, **config):
            run, _ = run_queries(ragapp_search(rag, "hybrid"), queries, EVAL_K)
        rows.append({"mode": "hybrid", **config, **evaluate(run, qrels)})
        print(f"  {config}: nDCG@10 {rows[-1]['ndcg@10']:.4f}", flush=True)
    best = {
        fusion: max((r for r in rows if r.get("fusion") == fusion), key=lambda r: r["ndcg@10"])
        for fusion in ("weighted", "rrf")
    }
    return {"rows": rows, "best": best}


# -- main ----------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "scifact",
        help="BEIR SciFact folder",
    )
    add("--split", choices=("train", "test"), default="test", help="queries to evaluate (default: test)")
    add("--sweep", action="store_true", help="tune fusion on the TRAIN queries (ignores --split) and exit")
    add("--rebuild", action="store_true", help="rebuild the cached indexes (ingest speed is measured then)")
    add("--skip-llamaindex", action="store_true", help="leave out the LlamaIndex baseline")
    add("--dense-weight", type=float, help="override retrieval.dense_weight (default: the project's)")
    add("--rrf-k", type=int, help="override retrieval.rrf_k (default: the project's)")
    add(
        "--work",
        type=Path,
        default=WORK_DIR / "scifact",
        help="cached indexes (default: bench/.work/scifact)",
    )
    add("--cache-dir", type=Path, default=default_cache_dir(), help="rag-app model cache (ONNX export)")
    add(
        "--out", type=Path, help="results JSON (default: bench/results/retrieval-scifact[-train|-sweep].json)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        raise SystemExit(f"no SciFact data at {args.data} (corpus.jsonl missing); pass --data")
    load_before = warn_if_busy("start")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    split = "train" if args.sweep else args.split
    corpus = list(read_jsonl(args.data / "corpus.jsonl"))
    qrels = load_qrels(args.data / "qrels" / f"{split}.tsv")
    texts = {row["_id"]: row["text"] for row in read_jsonl(args.data / "queries.jsonl")}
    queries = [(qid, texts[qid]) for qid in qrels]
    args.work.mkdir(parents=True, exist_ok=True)

    settings = Settings(cache_dir=args.cache_dir, data_dir=args.work / "data")
    if args.dense_weight is not None:
        settings.retrieval.dense_weight = args.dense_weight
    if args.rrf_k is not None:
        settings.retrieval.rrf_k = args.rrf_k
    rag, rag_ingest = ragapp_index(args.work, settings, corpus, args.rebuild)
    dataset = {"name": "BEIR SciFact", "path": str(args.data), "documents": len(corpus), "split": split}
    payload: dict[str, Any] = {
        "dataset": dataset | {"queries": len(queries)},
        "settings": {section: getattr(settings, section).model_dump() for section in SETTINGS_RECORDED}
        | {"latency_k": LATENCY_K, "eval_k": EVAL_K, "warmup_queries": WARMUP_QUERIES},
        "ingest": {"rag-app": rag_ingest},
    }
    if args.sweep:
        run_sweep(args, rag, queries, qrels, payload, load_before)
    else:
        run_headline(args, rag, corpus, queries, qrels, payload, load_before)


def run_sweep(
    args: argparse.Namespace,
    rag: RAG,
    queries: list[tuple[str, str]],
    qrels: Qrels,
    payload: dict[str, Any],
    load_before: list[float],
) -> None:
    print(f"sweep on {len(queries)} train queries ...", flush=True)
    result = sweep(rag, queries, qrels)
    payload["sweep"] = result
    headers = ["mode", "fusion", "dense_weight", "rrf_k", "nDCG@10", "recall@100"]
    keys = ["mode", "fusion", "dense_weight", "rrf_k", "ndcg@10", "recall@100"]
    print(format_table(headers, [[r.get(k) for k in keys] for r in result["rows"]]))
    for fusion, row in result["best"].items():
        print(f"best {fusion}: {row}")
    out = write_results(args.out or RESULTS_DIR / "retrieval-scifact-sweep.json", payload, load_before)
    print(f"wrote {out}; peak RSS {peak_rss_mb()} MiB")


def run_headline(
    args: argparse.Namespace,
    rag: RAG,
    corpus: list[dict[str, Any]],
    queries: list[tuple[str, str]],
    qrels: Qrels,
    payload: dict[str, Any],
    load_before: list[float],
) -> None:
    # Every index is built (or loaded) first, then all systems are timed back to back, so that
    # they see about the same load from other processes.
    bm25_search, payload["ingest"]["bm25s"] = bm25s_baseline(corpus)
    llama_search: Search | None = None
    if not args.skip_llamaindex:
        llama_search, payload["ingest"]["llamaindex"] = llamaindex_index(args.work, corpus, args.rebuild)
    systems: dict[str, Any] = {}
    print(f"{len(queries)} {payload['dataset']['split']} queries:", flush=True)
    for name, mode, fusion in HEADLINE:
        load = load_average()
        with retrieval_overrides(rag, fusion=fusion or rag.settings.retrieval.fusion):
            systems[name] = measure(name, ragapp_search(rag, mode), queries, qrels)
        systems[name]["load_average"] = {"before": load, "after": load_average()}
    others: list[tuple[str, Search]] = [("bm25s (direct)", bm25_search)]
    if llama_search is not None:
        others.append(("LlamaIndex dense", llama_search))
    for name, search in others:
        load = load_average()
        systems[name] = measure(name, search, queries, qrels)
        systems[name]["load_average"] = {"before": load, "after": load_average()}
    rag.close()
    payload["systems"] = systems
    payload["ratios"] = ratios = headline_ratios(systems, payload["ingest"])

    ingest = payload["ingest"]
    rows = []
    for name, r in systems.items():
        source = (
            "rag-app" if name.startswith("rag-app") else "bm25s" if name.startswith("bm25s") else "llamaindex"
        )
        lat = r["latency"]
        docs_per_s = ingest.get(source, {}).get("docs_per_s")
        rows.append([name, r["ndcg@10"], r["recall@100"], lat["p50_ms"], lat["p95_ms"], docs_per_s])
    print(format_table(["system", "nDCG@10", "recall@100", "p50 ms", "p95 ms", "ingest docs/s"], rows))
    print(json.dumps(ratios, indent=2))
    suffix = "" if payload["dataset"]["split"] == "test" else "-train"
    out = write_results(args.out or RESULTS_DIR / f"retrieval-scifact{suffix}.json", payload, load_before)
    print(f"wrote {out}; peak RSS {peak_rss_mb()} MiB")


def headline_ratios(systems: dict[str, Any], ingest: dict[str, Any]) -> dict[str, Any]:
    hybrid = systems["rag-app hybrid (weighted)"]
    ratios: dict[str, Any] = {"hybrid_ndcg@10": hybrid["ndcg@10"], "target_ndcg@10": 0.72}
    if "LlamaIndex dense" in systems:
        llama_p50 = systems["LlamaIndex dense"]["latency"]["p50_ms"]
        ratios["hybrid_p50_over_llamaindex_p50"] = round(hybrid["latency"]["p50_ms"] / llama_p50, 3)
        ratios["target_latency_ratio"] = 0.75
        ratios["ingest_docs_per_s_ragapp_over_llamaindex"] = round(
            ingest["rag-app"]["docs_per_s"] / ingest["llamaindex"]["docs_per_s"], 2
        )
    return ratios


if __name__ == "__main__":
    main()
