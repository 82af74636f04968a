"""End-to-end answers on SQuAD v1.1 dev: rag-app's packaged generators against LlamaIndex's query
engine over the same 0.5B model and the same passages, in one run.

The split (``squad_split``): articles 1-16 are the **dev** articles (prompt, threshold and verdict
choices are made there: ``--split dev --fit-verdict``), articles 17-24 the **test** articles (the
report). From each side a fixed random set of passages is removed from the index (80 dev, 60
test); one question of each removed passage is asked too, and its right answer is to abstain.
The answerable questions come from the passages that stay. One index (rag-app:
``RAG.add_documents``, one document per passage; LlamaIndex: ``VectorStoreIndex`` +
``HuggingFaceEmbedding`` + ``FaissVectorStore`` over the same passages) serves both kinds.

Systems (``--systems``): ``rag-app`` (the defaults: Qwen2.5-Coder-0.5B, no adapter, guard and
verifier), ``rag-app-1.5b`` (Qwen2.5-Coder-1.5B, no adapter), ``rag-app-135m``
(SmolLM2-135M), ``llamaindex`` (``as_query_engine(similarity_top_k=3, streaming=True)`` with
``HuggingFaceLLM`` over the converted 0.5B folder in bfloat16, its chat template, no adapter: the
model a user of LlamaIndex would load). They take turns question by question, so load from other
processes slows them alike. Every system decodes greedily with at most ``--max-new-tokens``.

Per system: SQuAD EM/F1 on the answerable questions (an abstention scores 0), the share of
answers containing a gold answer (SQuAD-normalised substring), the share of answered questions
citing the gold passage, abstention accuracy on the removed-passage questions, wrong answers shown
(shown with F1 = 0) and right answers withheld (abstained although the draft had F1 >= 0.8), both
as shares of the answerable questions, time to first token and answer latency p50/p95.

    python bench/answer.py --split dev --questions 240 --removed 80 --systems rag-app --fit-verdict
    python bench/answer.py --split test            # 300 + 60 questions, the four systems
    python bench/answer.py --split test --questions 30 --removed 10 --systems rag-app   # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
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

from eval.answer_metrics import best_over_truths, exact_match, normalize_answer, token_f1
from rag_app.documents import LoadedDocument, Section
from rag_app.errors import IndexNotFoundError
from rag_app.generation.base import Generator
from rag_app.not_found import is_not_found
from rag_app.prompting import cited_numbers, strip_citations
from rag_app.rag import RAG
from rag_app.settings import Settings

DATA = REPO_ROOT.parent / "shared" / "data" / "squad-dev"
SYSTEMS = ("rag-app", "rag-app-1.5b", "rag-app-135m", "llamaindex")
REMOVED = {"dev": 80, "test": 60}
DEV_ARTICLES, TEST_ARTICLES = (1, 16), (17, 24)


@dataclass
class Split:
    passages: list[dict[str, Any]]
    """The passages in the index (the removed ones are not)."""
    answerable: list[dict[str, Any]]
    unanswerable: list[dict[str, Any]]
    removed_ids: set[str]


def squad_split(data: Path, split: str, questions: int, removed: int, seed: int) -> Split:
    """The index passages and the questions of ``split`` (``dev``: articles 1-16, ``test``: 17-24).

    The removed passages are drawn for both sides at once from ``seed``, so the dev and test runs
    share one index.
    """
    passages = list(read_jsonl(data / "passages.jsonl"))
    qa = list(read_jsonl(data / "qa.jsonl"))
    titles = list(dict.fromkeys(q["title"] for q in qa))
    rng = random.Random(seed)
    removed_ids: set[str] = set()
    for first, last in (DEV_ARTICLES, TEST_ARTICLES):
        side = set(titles[first - 1 : last])
        ids = sorted({q["context_id"] for q in qa if q["title"] in side})
        removed_ids |= set(rng.sample(ids, REMOVED["dev" if first == 1 else "test"]))
    first, last = DEV_ARTICLES if split == "dev" else TEST_ARTICLES
    side = set(titles[first - 1 : last])
    pool = [q for q in qa if q["title"] in side]
    ask = random.Random(seed + 1)
    answerable = ask.sample([q for q in pool if q["context_id"] not in removed_ids], questions)
    by_passage: dict[str, list[dict[str, Any]]] = {}
    for q in pool:
        if q["context_id"] in removed_ids:
            by_passage.setdefault(q["context_id"], []).append(q)
    unanswerable = [ask.choice(by_passage[pid]) for pid in sorted(by_passage)]
    unanswerable = ask.sample(unanswerable, min(removed, len(unanswerable)))
    kept = [p for p in passages if p["_id"] not in removed_ids]
    return Split(kept, answerable, unanswerable, removed_ids)


# -- systems ---------------------------------------------------------------------------------------
class RagAppSystem:
    """rag-app through its public API (``RAG.stream``)."""

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
        assert answer is not None
        total = time.perf_counter() - t0
        grounding = answer.grounding
        cited = [c.source for c in answer.citations if c.cited]
        return {
            "text": answer.text,
            "draft": answer.draft,
            "abstained": answer.abstained,
            "code": answer.abstain_code,
            "score": grounding.score if grounding else None,
            "verifier": grounding.verifier if grounding else None,
            "features": grounding.features if grounding else {},
            "sources": [c.source for c in answer.citations],
            "cited": cited,
            "first_token_s": first if first is not None else total,
            "total_s": total,
            "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        }


class LlamaIndexSystem:
    """LlamaIndex's query engine with the same embedder, the same passages and the same base model."""

    def __init__(self, passages: list[dict[str, Any]], generator_folder: Path, max_new_tokens: int) -> None:
        import faiss
        import torch
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.llms.huggingface import HuggingFaceLLM
        from llama_index.vector_stores.faiss import FaissVectorStore
        from transformers import AutoModelForCausalLM, AutoTokenizer

        embed_model = llamaindex_offline(minilm_folder())
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
        model = AutoModelForCausalLM.from_pretrained(str(generator_folder), dtype=torch.bfloat16).eval()
        llm = HuggingFaceLLM(
            model=model,
            tokenizer=self.tokenizer,
            model_name=generator_folder.name,
            tokenizer_name=str(generator_folder),
            context_window=4096,
            max_new_tokens=max_new_tokens,
            generate_kwargs={"do_sample": False, "pad_token_id": self.tokenizer.eos_token_id},
            is_chat_model=True,
            device_map="cpu",
        )
        self.engine = index.as_query_engine(llm=llm, similarity_top_k=3, streaming=True)

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
        return {
            "text": text,
            "draft": None,
            "abstained": is_not_found(text),
            "code": "",
            "score": None,
            "verifier": None,
            "features": {},
            "sources": [n.node.metadata.get("source", "") for n in response.source_nodes],
            "cited": [],
            "first_token_s": first if first is not None else total,
            "total_s": total,
            "timings": {},
        }


def build_rag_index(folder: Path, passages: list[dict[str, Any]], settings: Settings) -> RAG:
    """The index of ``passages`` in ``folder``: opened when it is there, else built (one document each)."""
    try:
        return RAG.open(folder, settings)
    except IndexNotFoundError:
        rag = RAG(folder, settings)
        rag.add_documents(
            [
                LoadedDocument(f"squad/{p['_id']}", "text", [Section(p["text"], heading_path=(p["title"],))])
                for p in passages
            ]
        )
        return rag


def system_settings(name: str, base: Settings) -> Settings:
    settings = base.model_copy(deep=True)
    if name == "rag-app-1.5b":
        settings.generator.model = "Qwen2.5-Coder-1.5B-Instruct"
    elif name == "rag-app-135m":
        settings.generator.model = "SmolLM2-135M-Instruct"
    return settings


# -- two-turn dialogues (dev articles): does the follow-up resolve against the conversation? ---------
DIALOGUES = [
    (("Who won Super Bowl 50?", ["Denver Broncos"]), ("And who did they beat?", ["Carolina Panthers"])),
    (("Where was Super Bowl 50 played?", ["Levi's Stadium"]), ("On what date?", ["February 7, 2016"])),
    (("Who invented the atmospheric engine?", ["Thomas Newcomen"]), ("Around what year?", ["1712"])),
    (("When did the Apollo program run?", ["1961 to 1972"]), ("Which program supported it?", ["Gemini"])),
    (("How big is the Saxon Garden in Warsaw?", ["15.5 ha"]), ("What is at its east end?",
     ["Tomb of the Unknown Soldier"])),
    (("Which process produces oxygen from water using sunlight?", ["photosynthesis"]),
     ("And which process uses the oxygen?", ["cellular respiration"])),
]  # fmt: skip
"""Written from passages of articles 1-16 (Super_Bowl_50_0, Steam_engine_1, Apollo_program_1,
Warsaw_1, Oxygen_1): the second question only makes sense after the first."""


def run_dialogues(data: Path, settings: Settings) -> dict[str, Any]:
    """The dialogues over an index of every passage, through ``RAG.chat`` (history and follow-up
    retrieval as the app does it)."""
    passages = list(read_jsonl(data / "passages.jsonl"))
    rag = build_rag_index(WORK_DIR / "squad-full-index", passages, settings)
    turns = []
    for first, second in DIALOGUES:
        session = rag.chat()
        for question, truths in (first, second):
            t0 = time.perf_counter()
            answer = session.ask(question)
            turns.append(
                {
                    "question": question,
                    "follow_up": question == second[0],
                    "text": answer.text,
                    "draft": answer.draft,
                    "abstained": answer.abstained,
                    "contains": not answer.abstained and contains_gold(answer.text, truths),
                    "f1": 0.0
                    if answer.abstained
                    else best_over_truths(token_f1, strip_citations(answer.text), truths),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            print(f"  {question!r} -> {answer.text!r}", flush=True)
    follow = [t for t in turns if t["follow_up"]]
    return {
        "dialogues": len(DIALOGUES),
        "follow_up_contains_gold": round(statistics.fmean(t["contains"] for t in follow), 3),
        "first_turn_contains_gold": round(
            statistics.fmean(t["contains"] for t in turns if not t["follow_up"]), 3
        ),
        "turns": turns,
    }


# -- scoring ---------------------------------------------------------------------------------------
def contains_gold(text: str, truths: list[str]) -> bool:
    clean = normalize_answer(strip_citations(text))
    return any(normalize_answer(t) and normalize_answer(t) in clean for t in truths)


def score_row(row: dict[str, Any], item: dict[str, Any], answerable: bool) -> dict[str, Any]:
    clean = strip_citations(row["text"])
    truths = item["answers"]
    shown = not row["abstained"]
    row["id"], row["question"], row["answers"], row["answerable"] = (
        item["id"],
        item["question"],
        truths,
        answerable,
    )
    row["em"] = best_over_truths(exact_match, clean, truths) if shown and answerable else 0.0
    row["f1"] = best_over_truths(token_f1, clean, truths) if shown and answerable else 0.0
    row["contains"] = shown and answerable and contains_gold(row["text"], truths)
    draft = row.get("draft") or row["text"]
    row["draft_f1"] = best_over_truths(token_f1, strip_citations(draft), truths) if answerable else 0.0
    gold = f"squad/{item['context_id']}"
    row["gold_retrieved"] = any(s.endswith(item["context_id"]) for s in row["sources"])
    row["cites_gold"] = shown and gold in row["cited"]
    return row


def summarize(rows: list[dict[str, Any]], cites: bool) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    shown = [r for r in ans if not r["abstained"]]

    def share(values: list[bool]) -> float | None:
        return round(statistics.fmean(values), 4) if values else None

    return {
        "answerable": len(ans),
        "unanswerable": len(una),
        "exact_match": round(100 * statistics.fmean(r["em"] for r in ans), 2) if ans else None,
        "f1": round(100 * statistics.fmean(r["f1"] for r in ans), 2) if ans else None,
        "f1_shown": round(100 * statistics.fmean(r["f1"] for r in shown), 2) if shown else None,
        "contains_gold": share([r["contains"] for r in ans]),
        "cites_gold_of_shown": share([r["cites_gold"] for r in shown]) if cites else None,
        "gold_retrieved": share([r["gold_retrieved"] for r in ans]),
        "abstention_accuracy": share([r["abstained"] for r in una]),
        "abstained_answerable": share([r["abstained"] for r in ans]),
        "wrong_shown": share([not r["abstained"] and r["f1"] == 0 for r in ans]),
        "right_withheld": share([r["abstained"] and r["draft_f1"] >= 0.8 for r in ans]),
        "first_token": latency_summary([r["first_token_s"] for r in rows]),
        "total": latency_summary([r["total_s"] for r in rows]),
    }


# -- the run ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--questions", type=int, default=300, help="answerable questions")
    parser.add_argument("--removed", type=int, default=60, help="questions whose passage is removed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    parser.add_argument(
        "--fit-verdict",
        action="store_true",
        help="dev split: answer with nothing withheld, fit the verdict on the answers, write it",
    )
    parser.add_argument(
        "--verdict-out", type=Path, default=REPO_ROOT / "rag_app" / "guard" / "verdict-model.json"
    )
    parser.add_argument("--dialogues", action="store_true", help="run the two-turn dialogues only")
    parser.add_argument(
        "--refit-from", type=Path, default=None, help="fit the verdict again from a --fit-verdict result file"
    )
    parser.add_argument(
        "--recompute-features",
        action="store_true",
        help="with --refit-from: recompute span and question_cover from each answer and its prompt sources",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.refit_from is not None:
        saved = json.loads(args.refit_from.read_text(encoding="utf-8"))
        rows = saved["answers"]["rag-app"]
        if args.recompute_features:
            _recompute_features(args, rows)
        _fit_rows(args, rows, saved["verdict_info"])
        return
    if args.dialogues:
        base = Settings.load().model_copy(deep=True)
        base.generator.threads = args.threads
        load_before = warn_if_busy("answer")
        result = run_dialogues(args.data, base)
        write_results(args.out or RESULTS_DIR / "answer-dialogues.json", result, load_before)
        print(json.dumps({k: v for k, v in result.items() if k != "turns"}, indent=1))
        return
    if args.fit_verdict and args.split != "dev":
        parser.error("--fit-verdict fits on the dev articles only: add --split dev")
    wanted = [s for s in args.systems.split(",") if s]
    out = args.out or RESULTS_DIR / f"answer-squad-{args.split}{'-fit' if args.fit_verdict else ''}.json"
    load_before = warn_if_busy("answer")

    split = squad_split(args.data, args.split, args.questions, args.removed, args.seed)
    base = Settings.load().model_copy(deep=True)
    base.generator.max_new_tokens = args.max_new_tokens
    base.generator.threads = args.threads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # LlamaIndex's HuggingFaceLLM runs in this process too
    folder = WORK_DIR / f"squad-removed-{args.seed}-index"
    rag = build_rag_index(folder, split.passages, base)
    systems: dict[str, Callable[[str], dict[str, Any]]] = {}
    setup: dict[str, Any] = {
        "index_passages": len(split.passages),
        "removed_passages": len(split.removed_ids),
    }
    for name in wanted:
        if name.startswith("rag-app"):
            settings = system_settings(name, base)
            generator = None
            if args.fit_verdict:
                from rag_app.generation import create_generator

                generator = create_generator(settings)
                settings.guard.on_unsupported = "pass"
                settings.guard.verdict_path = _neutral_verdict(
                    generator, WORK_DIR / f"neutral-verdict-{name}.json"
                )
            system = RAG(rag.index_dir, settings, embedder=rag.embedder, generator=generator)
            systems[name] = RagAppSystem(system).ask
        elif name == "llamaindex":
            from rag_app.models import generator_folder

            li = LlamaIndexSystem(split.passages, generator_folder(base), args.max_new_tokens)
            setup["llamaindex_index_seconds"] = round(li.index_seconds, 1)
            systems[name] = li.ask
        else:
            parser.error(f"unknown system {name!r}; choose from {SYSTEMS}")
    for ask in systems.values():  # warm-up: model loads and first-call costs stay out of the figures
        ask("What is this collection about?")

    items = [(q, True) for q in split.answerable] + [(q, False) for q in split.unanswerable]
    random.Random(args.seed + 2).shuffle(items)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    t_start = time.perf_counter()
    for i, (item, answerable) in enumerate(items):
        order = list(systems)[i % len(systems) :] + list(systems)[: i % len(systems)]
        for name in order:
            rows[name].append(score_row(systems[name](item["question"]), item, answerable))
        if (i + 1) % 20 == 0 or i + 1 == len(items):
            elapsed = time.perf_counter() - t_start
            print(f"{i + 1}/{len(items)} questions, {elapsed / 60:.1f} min", flush=True)
            summary = {n: summarize(r, n.startswith("rag-app")) for n, r in rows.items()}
            _write(out, args, load_before, setup, summary, rows, complete=i + 1 == len(items))

    summary = {n: summarize(r, n.startswith("rag-app")) for n, r in rows.items()}
    if args.fit_verdict:
        _fit(args, rows["rag-app"], systems)
    print(_table(summary))


def _neutral_verdict(generator: Generator, path: Path) -> Path:
    """Write a verdict that passes everything and asks ``generator``'s verifier (its info names that
    generator, so its full model applies): for collecting the features to fit on. Returns ``path``,
    for ``guard.verdict_path``."""
    from rag_app.guard.verdict import FEATURES, LEXICAL_FEATURES, Logistic, VerdictModel

    def flat(names: tuple[str, ...]) -> Logistic:
        return Logistic(names, (0.0,) * len(names), 0.0, (0.0,) * len(names), (1.0,) * len(names))

    info = {"generator": generator.model_id, "adapter": generator.adapter_id}
    path.parent.mkdir(parents=True, exist_ok=True)
    VerdictModel(flat(FEATURES), flat(LEXICAL_FEATURES), 0.0, 0.0, info).save(path)
    return path


def _fit(args: argparse.Namespace, rows: list[dict[str, Any]], systems: dict[str, Any]) -> None:
    info = {
        "fitted_on": f"SQuAD dev articles {DEV_ARTICLES[0]}-{DEV_ARTICLES[1]}, seed {args.seed}",
        "questions": len(rows),
        "generator": _generator_id(systems),
        "adapter": _adapter_id(systems),
    }
    out = args.out or RESULTS_DIR / "answer-squad-dev-fit.json"
    saved = json.loads(out.read_text(encoding="utf-8"))
    saved["verdict_info"] = info
    out.write_text(json.dumps(saved, indent=2, default=str) + "\n", encoding="utf-8")
    _fit_rows(args, rows, info)


def _recompute_features(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """``span`` and ``question_cover`` again, as the current code computes them, from the same
    prompt sources (retrieval is deterministic); the generator's features are kept as measured."""
    from rag_app.guard.verdict import span_and_cover

    split = squad_split(args.data, "dev", args.questions, args.removed, args.seed)
    base = Settings.load().model_copy(deep=True)
    rag = build_rag_index(WORK_DIR / f"squad-removed-{args.seed}-index", split.passages, base)
    for row in rows:
        if not row["features"] or row["abstained"]:
            continue
        prompt = rag.prompt(row["question"])
        if prompt is None:
            continue
        passages = [h.text for h in prompt.sources]
        span, cover = span_and_cover(row["question"], row["text"], passages, cited_numbers(row["text"]))
        row["features"] = {**row["features"], "span": span, "question_cover": cover}
    rag.close()


def _fit_rows(args: argparse.Namespace, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    from eval.calibrate import Row, fit_verdict

    fit_rows = [
        Row(r["features"], r["f1"], r["answerable"], bool(r.get("contains")))
        for r in rows
        if r["features"] and not r["abstained"]
    ]
    info = {**info, "fitted": time.strftime("%Y-%m-%d")}
    model = fit_verdict(fit_rows, info)
    model.save(args.verdict_out)
    print(json.dumps({"threshold": model.threshold, **model.info}, indent=1))


def _generator_id(systems: dict[str, Any]) -> str:
    return str(systems["rag-app"].__self__.rag.generator.model_id)


def _adapter_id(systems: dict[str, Any]) -> str | None:
    return systems["rag-app"].__self__.rag.generator.adapter_id


def _table(summary: dict[str, Any]) -> str:
    headers = [
        "system", "EM", "F1", "contains gold", "cites gold", "abstention acc", "wrong shown",
        "right withheld", "TTFT p50 s", "p50 s", "p95 s",
    ]  # fmt: skip
    return format_table(
        headers,
        [
            [
                name,
                s["exact_match"],
                s["f1"],
                s["contains_gold"],
                s["cites_gold_of_shown"] if s["cites_gold_of_shown"] is not None else "-",
                s["abstention_accuracy"],
                s["wrong_shown"],
                s["right_withheld"],
                round(s["first_token"]["p50_ms"] / 1000, 2),
                round(s["total"]["p50_ms"] / 1000, 2),
                round(s["total"]["p95_ms"] / 1000, 2),
            ]
            for name, s in summary.items()
        ],
    )


def _write(
    out: Path,
    args: argparse.Namespace,
    load_before: list[float],
    setup: dict[str, Any],
    summary: dict[str, Any],
    rows: dict[str, list[dict[str, Any]]],
    *,
    complete: bool,
) -> None:
    ratios: dict[str, float] = {}
    base, li = summary.get("rag-app"), summary.get("llamaindex")
    if base and li and li["total"]["p50_ms"]:
        ratios["latency_p50_rag_app_over_llamaindex"] = round(
            base["total"]["p50_ms"] / li["total"]["p50_ms"], 3
        )
        ratios["f1_rag_app_minus_llamaindex"] = round((base["f1"] or 0) - (li["f1"] or 0), 2)
    keep = ("id", "question", "answers", "answerable", "text", "draft", "abstained", "code", "score",
            "verifier", "f1", "contains", "cites_gold", "draft_f1", "first_token_s", "total_s", "timings",
            "features", "sources", "cited")  # fmt: skip
    payload = {
        "complete": complete,
        "settings": {
            "split": args.split,
            "questions": args.questions,
            "removed": args.removed,
            "seed": args.seed,
            "max_new_tokens": args.max_new_tokens,
            "threads": args.threads,
            "fit_verdict": args.fit_verdict,
        },
        "setup": setup,
        "summary": summary,
        "ratios": ratios,
        "peak_rss_mb": peak_rss_mb(),
        "answers": {name: [{k: r.get(k) for k in keep} for r in r_list] for name, r_list in rows.items()},
    }
    write_results(out, payload, load_before)


if __name__ == "__main__":
    main()
