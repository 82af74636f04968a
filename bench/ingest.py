"""Ingest throughput on a real documentation corpus: rag-app against LlamaIndex's default pipeline.

Each system runs in its own subprocess (so peak RSS is its own) on the same files, one after the
other: rag-app cold (fresh index folder, model cache already warm), rag-app re-ingest of the
unchanged files into that index, then LlamaIndex (SimpleDirectoryReader -> SentenceSplitter(256, 32)
with the MiniLM tokenizer -> VectorStoreIndex on FAISS with HuggingFaceEmbedding -> persist).

    ../shared/scripts/fetch-doc-corpus.sh ../doc-corpus        # once, about 100 MB
    python bench/ingest.py --subset 300                         # first 300 files (PDFs proportionally)
    python bench/ingest.py --subset 300 --profile               # plus a cProfile run of rag-app

The rag-app cold run times its phases (loading, chunking, embedding; the rest is hashing,
SQLite and the FAISS/BM25 build) by wrapping those calls, which costs microseconds per file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    llamaindex_offline,
    load_average,
    minilm_folder,
    model_dimension,
    peak_rss_mb,
    timer,
    warn_if_busy,
    write_results,
)

CHUNK_SIZE, CHUNK_OVERLAP = 256, 32
PROFILE_TOP = 30
WORKERS = ("export", "ragapp-cold", "ragapp-reingest", "llamaindex", "ragapp-profile")


def select_files(corpus: Path, subset: int, extensions: set[str], pdfs: int | None = None) -> list[Path]:
    """The first ``subset`` files in sorted order, with PDFs in proportion to their share of the
    corpus, or the first ``pdfs`` PDFs when given (they count toward ``subset``)."""
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in extensions)
    if subset <= 0 or subset >= len(files):
        return files
    pdf_files = [p for p in files if p.suffix.lower() == ".pdf"]
    others = [p for p in files if p.suffix.lower() != ".pdf"]
    n_pdf = round(subset * len(pdf_files) / len(files)) if pdfs is None else pdfs
    n_pdf = max(0, min(len(pdf_files), n_pdf, subset))
    return sorted(others[: subset - n_pdf] + pdf_files[:n_pdf])


class Phases:
    """Seconds spent in named phases, accumulated over many calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.time(name):
                return func(*args, **kwargs)

        return timed

    def summary(self, total: float) -> dict[str, Any]:
        rounded = {k: round(v, 2) for k, v in self.seconds.items()}
        rounded["other"] = round(total - sum(self.seconds.values()), 2)
        return {
            "seconds": rounded,
            "calls": self.calls,
            "share": {k: round(v / total, 3) for k, v in rounded.items()},
        }


class TimedEmbedder:
    """Delegates to an embedder and times ``embed_documents`` (the embedder protocol is unchanged)."""

    def __init__(self, inner: Any, phases: Phases) -> None:
        self._inner, self._phases = inner, phases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_documents(self, texts: Any, **kwargs: Any) -> Any:
        with self._phases.time("embed"):
            return self._inner.embed_documents(texts, **kwargs)

    def embed_query(self, text: str) -> Any:
        return self._inner.embed_query(text)


def figures(files: list[Path], chunks: int, seconds: float) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in files)
    return {
        "files": len(files),
        "mb": round(size / 1e6, 2),
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "files_per_s": round(len(files) / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
        "mb_per_s": round(size / 1e6 / seconds, 4),
    }


def token_figures(texts: list[str], seconds: float) -> dict[str, Any]:
    """Tokens the model saw (MiniLM tokenizer, special tokens included, cut at its 256-token window).

    Counted after the clock stops. The two systems cut different texts (rag-app strips markup and
    starts a chunk at each heading; LlamaIndex embeds the raw file text plus its metadata line), so
    tokens/s is the like-for-like measure of embedding work next to chunks/s and MB/s.
    """
    from tokenizers import Tokenizer

    folder = minilm_folder()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts)) if texts else 0
    return {
        "embedded_texts": len(texts),
        "embedded_tokens": tokens,
        "mean_tokens_per_text": round(tokens / len(texts), 1) if texts else 0.0,
        "tokens_per_s": round(tokens / seconds, 1),
    }


# -- workers (each in its own process) ------------------------------------------------------------
def ragapp_worker(files: list[Path], work: Path, cache_dir: Path, kind: str) -> dict[str, Any]:
    import cProfile
    import pstats

    import bm25s  # noqa: F401 - library imports stay outside the timed region, as for LlamaIndex
    import faiss  # noqa: F401
    import onnxruntime  # noqa: F401

    import indexes.pipeline as pipeline
    from indexes.chunking import Chunker
    from rag_app.embeddings import create_embedder
    from rag_app.rag import RAG
    from rag_app.settings import Settings
    from rag_app.store.docstore import DOCSTORE_NAME, Docstore

    settings = Settings(cache_dir=cache_dir, data_dir=work / "data")
    index_dir = work / ("ragapp-profile-index" if kind == "ragapp-profile" else "ragapp-index")
    if kind != "ragapp-reingest":
        shutil.rmtree(index_dir, ignore_errors=True)
    phases = Phases()
    pipeline.load_document = phases.wrap("load", pipeline.load_document)
    Chunker.chunk = phases.wrap("chunk", Chunker.chunk)  # type: ignore[method-assign]
    rag = RAG(index_dir, settings, embedder=TimedEmbedder(create_embedder(settings), phases))
    profiler = cProfile.Profile() if kind == "ragapp-profile" else None
    with timer() as elapsed:
        if profiler is not None:
            profiler.enable()
        report = rag.ingest(files)
        if profiler is not None:
            profiler.disable()
    result = figures(files, report.chunks_added, elapsed())
    result |= {
        "phases": phases.summary(elapsed()),
        "chunks_embedded": report.chunks_embedded,
        "chunks_reused": report.chunks_reused,
        "files_ingested": report.files_ingested,
        "files_unchanged": report.files_unchanged,
        "files_failed": len(report.files_failed),
        "failures": report.files_failed[:10],
    }
    if report.chunks_embedded:
        docstore = Docstore(index_dir / DOCSTORE_NAME, readonly=True)  # no FAISS or BM25 loaded
        texts = list(dict.fromkeys(text for _, text in docstore.iter_texts()))
        docstore.close()
        result |= token_figures(texts, elapsed())
    if profiler is not None:
        stats = pstats.Stats(profiler)
        rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:PROFILE_TOP]  # type: ignore[attr-defined]
        result["profile_top_tottime"] = [
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": nc,
                "tottime_s": round(tt, 2),
                "cumtime_s": round(ct, 2),
            }
            for (file, line, name), (_, nc, tt, ct, _) in rows
        ]
    return result


def llamaindex_worker(files: list[Path], work: Path) -> dict[str, Any]:
    import faiss
    import sentence_transformers  # noqa: F401 - imports outside the timed region, as for rag-app
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.faiss import FaissVectorStore

    folder = minilm_folder()
    persist = work / "llamaindex-index"
    shutil.rmtree(persist, ignore_errors=True)
    phases = Phases()
    with timer() as elapsed:
        with phases.time("model_load"):
            embed_model = llamaindex_offline(folder)
        with phases.time("load"):
            documents = SimpleDirectoryReader(input_files=[str(p) for p in files]).load_data()
        with phases.time("chunk"):
            splitter = SentenceSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
            nodes = splitter.get_nodes_from_documents(documents)
        with phases.time("embed+index"):
            store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(model_dimension(folder)))
            context = StorageContext.from_defaults(vector_store=store)
            index = VectorStoreIndex(nodes, storage_context=context, embed_model=embed_model)
        with phases.time("persist"):
            index.storage_context.persist(persist_dir=str(persist))
    from llama_index.core.schema import MetadataMode

    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    return (
        figures(files, len(nodes), elapsed())
        | {"phases": phases.summary(elapsed()), "documents": len(documents)}
        | token_figures(texts, elapsed())
    )


def export_worker() -> dict[str, Any]:
    """The one-time ONNX export (and int8 quantization), into an empty cache folder."""
    from rag_app.embeddings import create_embedder
    from rag_app.settings import Settings

    with tempfile.TemporaryDirectory() as cache:
        embedder = create_embedder(Settings(cache_dir=Path(cache)))
        with timer() as elapsed:
            embedder.embed_query("export the model")
    return {"seconds": round(elapsed(), 2)}


def run_worker(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = [Path(line) for line in args.files.read_text(encoding="utf-8").splitlines() if line]
    if args.worker == "export":
        result = export_worker()
    elif args.worker == "llamaindex":
        result = llamaindex_worker(files, args.work)
    else:
        result = ragapp_worker(files, args.work, args.cache_dir, args.worker)
    result |= {"peak_rss_mb": peak_rss_mb(), "process_wall_s": round(time.perf_counter() - started, 2)}
    args.result.write_text(json.dumps(result, indent=2), encoding="utf-8")


# -- the parent ------------------------------------------------------------------------------------
def spawn(kind: str, args: argparse.Namespace, files_list: Path) -> dict[str, Any]:
    result = args.work / f"{kind}.json"
    result.unlink(missing_ok=True)
    options = {"--worker": kind, "--files": files_list, "--work": args.work, "--cache-dir": args.cache_dir}
    command = [
        sys.executable,
        __file__,
        *(str(x) for kv in options.items() for x in kv),
        "--result",
        str(result),
    ]
    print(f"{kind}: running (load average {load_average()[0]}) ...", flush=True)
    subprocess.run(command, check=True)
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    data["load_average_after"] = load_average()
    print(f"{kind}: {data.get('seconds')} s, peak RSS {data.get('peak_rss_mb')} MiB", flush=True)
    return data


def parse_args() -> argparse.Namespace:
    from rag_app.settings import default_cache_dir

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--corpus", type=Path, default=REPO_ROOT.parent / "doc-corpus", help="folder from fetch-doc-corpus.sh"
    )
    add("--subset", type=int, default=0, help="first N files in sorted order, PDFs proportionally (0: all)")
    add("--pdfs", type=int, help="PDFs among the --subset files (default: their share of the corpus)")
    add("--extensions", default="html,pdf", help="file types taken from the corpus (default: html,pdf)")
    add("--skip-llamaindex", action="store_true", help="leave out the LlamaIndex baseline")
    add(
        "--profile", action="store_true", help="also run rag-app once under cProfile and keep the top entries"
    )
    add(
        "--measure-export", action="store_true", help="also time the one-time ONNX export into an empty cache"
    )
    add(
        "--work", type=Path, default=WORK_DIR / "ingest", help="scratch indexes (default: bench/.work/ingest)"
    )
    add("--cache-dir", type=Path, default=default_cache_dir(), help="rag-app model cache (warm)")
    add("--out", type=Path, default=RESULTS_DIR / "ingest-doc-corpus.json", help="results JSON")
    add("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    add("--files", type=Path, help=argparse.SUPPRESS)
    add("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    extensions = {e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip()}
    files = select_files(args.corpus, args.subset, extensions, args.pdfs)
    if not files:
        raise SystemExit(
            f"no {'/'.join(sorted(extensions))} files under {args.corpus}; run fetch-doc-corpus.sh"
        )
    args.work.mkdir(parents=True, exist_ok=True)
    files_list = args.work / "files.txt"
    files_list.write_text("".join(f"{p}\n" for p in files), encoding="utf-8")
    n_pdf = sum(p.suffix.lower() == ".pdf" for p in files)
    print(
        f"{len(files)} files ({n_pdf} PDF), {sum(p.stat().st_size for p in files) / 1e6:.1f} MB", flush=True
    )
    load_before = warn_if_busy("start")

    runs: dict[str, Any] = {}
    if args.measure_export:
        runs["onnx_export"] = spawn("export", args, files_list)
    runs["rag-app cold"] = spawn("ragapp-cold", args, files_list)
    runs["rag-app re-ingest"] = spawn("ragapp-reingest", args, files_list)
    if not args.skip_llamaindex:
        runs["LlamaIndex"] = spawn("llamaindex", args, files_list)
    if args.profile:
        runs["rag-app cold (cProfile)"] = spawn("ragapp-profile", args, files_list)

    cold = runs["rag-app cold"]
    ratios = {
        "reingest_speedup": ratio(cold["seconds"], runs["rag-app re-ingest"]["seconds"]),
        "target_reingest": 50,
    }
    if "LlamaIndex" in runs:
        llama = runs["LlamaIndex"]
        for key in ("chunks_per_s", "mb_per_s", "files_per_s", "tokens_per_s"):
            if key in cold and key in llama:
                ratios[f"{key}_ragapp_over_llamaindex"] = ratio(cold[key], llama[key])
        ratios["target_chunks_mb_per_s"] = 3
    subset = {
        "corpus": str(args.corpus),
        "subset": args.subset or "all",
        "pdfs_requested": args.pdfs,
        "extensions": sorted(extensions),
        "files": len(files),
        "pdf_files": n_pdf,
        "mb": round(sum(p.stat().st_size for p in files) / 1e6, 2),
        "first": str(files[0].relative_to(args.corpus)),
        "last": str(files[-1].relative_to(args.corpus)),
        "pdfs": [str(p.relative_to(args.corpus)) for p in files if p.suffix.lower() == ".pdf"],
    }
    settings = {"chunk_tokens": CHUNK_SIZE, "overlap_tokens": CHUNK_OVERLAP}
    out = write_results(
        args.out, {"subset": subset, "settings": settings, "runs": runs, "ratios": ratios}, load_before
    )

    keys = ("files", "chunks", "mb", "seconds", "files_per_s", "chunks_per_s", "mb_per_s", "peak_rss_mb")
    rows = [[name, *(r.get(k) for k in keys)] for name, r in runs.items() if name != "onnx_export"]
    print(format_table(["system", *keys], rows))
    for name, r in runs.items():
        if "phases" in r:
            print(f"{name} phases (s): {r['phases']['seconds']}")
    if "onnx_export" in runs:
        print(f"one-time ONNX export + int8 quantization: {runs['onnx_export']['seconds']} s")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
