"""End-to-end answers on SQuAD v1.1 dev: rag-app (transformers and llama.cpp backends) against
LlamaIndex's query engine over the same model and the same passages, in one run.

The 1,048 passages of ``../shared/data/squad-dev`` are indexed once (rag-app: ``RAG.add_documents``,
one document per passage; LlamaIndex: ``VectorStoreIndex`` + ``HuggingFaceEmbedding`` +
``FaissVectorStore`` over the same passages, ``SentenceSplitter(256, 32)``). A fixed random sample
of questions (``--questions``, seed ``--seed``) is asked to every system; the systems take turns
question by question, so a busy machine slows them alike. Per system:

* SQuAD EM and F1 (official normalisation; citation marks removed; an abstention scores 0, since
  every question's answer is in the corpus), best over the gold answers;
* recall@5: the gold paragraph is among the five passages given to the generator;
* share of answers with a sentence flagged by the guard, abstention rate (rag-app only: LlamaIndex
  has neither);
* time to first token p50 (streaming), decode tokens/s (tokens after the first over the time after
  the first), total seconds per question.

Every system decodes greedily with at most ``--max-new-tokens`` tokens on ``--threads`` CPU
threads. rag-app uses its defaults (hybrid retrieval, k = 5, the guard on). LlamaIndex uses
``as_query_engine(similarity_top_k=5, streaming=True)`` with ``HuggingFaceLLM`` over the
converted SmolLM2 folder and its chat template.

    python bench/answer.py                     # 300 questions, writes bench/results/answer-squad.json
    python bench/answer.py --questions 30 --systems rag-app   # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    latency_summary,
    llamaindex_offline,
    minilm_folder,
    peak_rss_mb,
    read_jsonl,
    warn_if_busy,
    write_results,
)

from eval.answer_metrics import best_over_truths, exact_match, token_f1
from rag_app.documents import LoadedDocument, Section
from rag_app.prompting import strip_citations
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.store.index import IndexStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev"
SYSTEMS = ("rag-app", "rag-app-llamacpp", "llamaindex")


def _answer_metrics(text: str, truths: list[str], abstained: bool) -> tuple[float, float]:
    if abstained:
        return 0.0, 0.0
    clean = strip_citations(text)
    return best_over_truths(exact_match, clean, truths), best_over_truths(token_f1, clean, truths)


class RagAppSystem:
    """rag-app through its public API (``RAG.stream``), one backend."""

    def __init__(self, rag: RAG) -> None:
        self.rag = rag

    def ask(self, question: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        stream = self.rag.stream(question)
        first: float | None = None
        for _ in stream:
            if first is None:
                first = time.perf_counter() - t0
        answer = stream.answer
        total = time.perf_counter() - t0
        tokens = answer.usage.get("completion_tokens", 0)
        generation = answer.timings.get("generation", 0.0)
        decode = generation - answer.timings.get("first_token", generation)
        return {
            "text": answer.text,
            "sources": [c.source for c in answer.citations][:5],
            "abstained": answer.abstained,
            "flagged": bool(answer.grounding and answer.grounding.flagged),
            "first_token_s": first if first is not None else total,
            "tokens": tokens,
            "decode_s": decode,
            "total_s": total,
        }


class LlamaIndexSystem:
    """LlamaIndex's default query engine with the same embedder and generator."""

    def __init__(self, passages: list[dict[str, Any]], generator_folder: Path, max_new_tokens: int) -> None:
        import faiss
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.llms.huggingface import HuggingFaceLLM
        from llama_index.vector_stores.faiss import FaissVectorStore
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = minilm_folder()
        embed_model = llamaindex_offline(folder)
        documents = [
            Document(text=f"{p['title']}\n\n{p['text']}", doc_id=p["_id"], metadata={"source": p["_id"]})
            for p in passages
        ]
        store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(384))
        t0 = time.perf_counter()
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embed_model,
            transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32)],
        )
        self.index_seconds = time.perf_counter() - t0
        self.tokenizer = AutoTokenizer.from_pretrained(str(generator_folder))
        model = AutoModelForCausalLM.from_pretrained(str(generator_folder)).eval()
        llm = HuggingFaceLLM(
            model=model,
            tokenizer=self.tokenizer,
            model_name="SmolLM2-135M-Instruct",
            tokenizer_name=str(generator_folder),
            context_window=2048,
            max_new_tokens=max_new_tokens,
            generate_kwargs={"do_sample": False, "pad_token_id": self.tokenizer.eos_token_id},
            is_chat_model=True,
            device_map="cpu",
        )
        self.engine = index.as_query_engine(llm=llm, similarity_top_k=5, streaming=True)

    def ask(self, question: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        response = self.engine.query(question)
        pieces: list[str] = []
        first: float | None = None
        for piece in response.response_gen:
            if first is None:
                first = time.perf_counter() - t0
            pieces.append(piece)
        total = time.perf_counter() - t0
        text = "".join(pieces).strip()
        tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        first = first if first is not None else total
        return {
            "text": text,
            "sources": [n.node.metadata.get("source", "") for n in response.source_nodes][:5],
            "abstained": False,
            "flagged": False,
            "first_token_s": first,
            "tokens": tokens,
            "decode_s": total - first,
            "total_s": total,
        }


def build_rag_index(folder: Path, passages: list[dict[str, Any]], settings: Settings) -> tuple[RAG, float]:
    rag = RAG(folder, settings)
    t0 = time.perf_counter()
    if not IndexStore.exists(folder):
        rag.add_documents(
            [
                LoadedDocument(f"squad/{p['_id']}", "text", [Section(p["text"], heading_path=(p["title"],))])
                for p in passages
            ]
        )
    return rag, time.perf_counter() - t0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r["abstained"]]
    decode_tokens = sum(max(0, r["tokens"] - 1) for r in rows)
    decode_s = sum(r["decode_s"] for r in rows)
    return {
        "n": len(rows),
        "exact_match": round(100 * statistics.fmean(r["em"] for r in rows), 2),
        "f1": round(100 * statistics.fmean(r["f1"] for r in rows), 2),
        "f1_answered": round(100 * statistics.fmean(r["f1"] for r in answered), 2) if answered else None,
        "recall_at_5": round(statistics.fmean(r["gold_retrieved"] for r in rows), 4),
        "flagged_share": round(statistics.fmean(r["flagged"] for r in rows), 4),
        "abstention_rate": round(statistics.fmean(r["abstained"] for r in rows), 4),
        "first_token": latency_summary([r["first_token_s"] for r in rows]),
        "total": latency_summary([r["total_s"] for r in rows]),
        "decode_tokens_per_s": round(decode_tokens / decode_s, 2) if decode_s > 0 else None,
        "mean_answer_tokens": round(statistics.fmean(r["tokens"] for r in rows), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of every generator (1 holds up best on a busy machine)",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "answer-squad.json")
    args = parser.parse_args()
    wanted = [s for s in args.systems.split(",") if s]
    load_before = warn_if_busy("answer")

    passages = list(read_jsonl(args.data / "passages.jsonl"))
    questions = list(read_jsonl(args.data / "qa.jsonl"))
    sample = random.Random(args.seed).sample(questions, args.questions)

    settings = Settings.load().model_copy(deep=True)
    settings.generator.max_new_tokens = args.max_new_tokens
    settings.generator.threads = args.threads
    import torch

    torch.set_num_threads(args.threads)  # LlamaIndex's HuggingFaceLLM runs in this process too
    rag, index_seconds = build_rag_index(WORK_DIR / "squad-index", passages, settings)
    systems: dict[str, Callable[[str], dict[str, Any]]] = {}
    setup: dict[str, Any] = {"rag_app_index_seconds": round(index_seconds, 1)}
    if "rag-app" in wanted:
        systems["rag-app"] = RagAppSystem(rag).ask
    if "rag-app-llamacpp" in wanted:
        cpp = settings.model_copy(deep=True)
        cpp.generator.backend = "llamacpp"
        systems["rag-app-llamacpp"] = RagAppSystem(RAG(rag.index_dir, cpp, embedder=rag.embedder)).ask
    if "llamaindex" in wanted:
        from rag_app.models import generator_folder

        llamaindex = LlamaIndexSystem(passages, generator_folder(settings), args.max_new_tokens)
        setup["llamaindex_index_seconds"] = round(llamaindex.index_seconds, 1)
        systems["llamaindex"] = llamaindex.ask
    for ask in systems.values():  # warm-up: model loads and first-call costs stay out of the figures
        ask("What is this collection about?")

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    t_start = time.perf_counter()
    for i, item in enumerate(sample):
        order = list(systems)[i % len(systems) :] + list(systems)[: i % len(systems)]
        for name in order:
            row = systems[name](item["question"])
            row["em"], row["f1"] = _answer_metrics(row["text"], item["answers"], row["abstained"])
            row["gold_retrieved"] = any(s.endswith(item["context_id"]) for s in row["sources"])
            row["id"] = item["id"]
            rows[name].append(row)
        if (i + 1) % 25 == 0 or i + 1 == len(sample):
            elapsed = time.perf_counter() - t_start
            print(f"{i + 1}/{len(sample)} questions, {elapsed / 60:.1f} min", flush=True)
            partial = {name: summarize(r) for name, r in rows.items()}
            _write(args, load_before, setup, partial, rows, complete=i + 1 == len(sample))

    summary = {name: summarize(r) for name, r in rows.items()}
    headers = ["system", "EM", "F1", "recall@5", "flagged", "abstained", "TTFT p50 ms", "decode tok/s"]
    print(
        format_table(
            headers,
            [
                [
                    name,
                    s["exact_match"],
                    s["f1"],
                    s["recall_at_5"],
                    s["flagged_share"],
                    s["abstention_rate"],
                    s["first_token"]["p50_ms"],
                    s["decode_tokens_per_s"],
                ]
                for name, s in summary.items()
            ],
        )
    )


def _write(
    args: argparse.Namespace,
    load_before: list[float],
    setup: dict[str, Any],
    summary: dict[str, Any],
    rows: dict[str, list[dict[str, Any]]],
    *,
    complete: bool,
) -> None:
    ratios: dict[str, float] = {}
    base = summary.get("rag-app")
    if base and "rag-app-llamacpp" in summary and base["decode_tokens_per_s"]:
        ratios["llamacpp_over_transformers_decode"] = round(
            summary["rag-app-llamacpp"]["decode_tokens_per_s"] / base["decode_tokens_per_s"], 2
        )
    if base and "llamaindex" in summary:
        li = summary["llamaindex"]
        ratios["f1_rag_app_minus_llamaindex"] = round(base["f1"] - li["f1"], 2)
        ratios["ttft_p50_rag_app_over_llamaindex"] = round(
            base["first_token"]["p50_ms"] / li["first_token"]["p50_ms"], 3
        )
    guard_file = RESULTS_DIR / "guard.json"
    guard = json.loads(guard_file.read_text(encoding="utf-8")).get("tasks") if guard_file.is_file() else None
    payload = {
        "complete": complete,
        "settings": {
            "questions": args.questions,
            "seed": args.seed,
            "max_new_tokens": args.max_new_tokens,
            "threads": args.threads,
        },
        "setup": setup,
        "summary": summary,
        "ratios": ratios,
        "guard_on_labelled_data": guard,
        "peak_rss_mb": peak_rss_mb(),
        "answers": {
            name: [{k: r[k] for k in ("id", "text", "em", "f1", "abstained", "flagged")} for r in r_list]
            for name, r_list in rows.items()
        },
    }
    write_results(args.out, payload, load_before)


if __name__ == "__main__":
    main()
