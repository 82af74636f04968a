"""The full evaluation report on real data, twice, to show it is reproducible.

1. ``squad-dev``: ``--questions`` questions (seeded sample of the 5,696) through
   :func:`eval.runner.run_evaluation` with the packaged models (SmolLM2-135M greedy,
   all-MiniLM-L6-v2, the guard): retrieval, answer and RAGAS metrics, the hallucination
   report, and the probes on ``--probe-questions`` questions. The HTML, JSON and Markdown report
   is written to ``bench/results/eval-report/``. Wall time per 100 questions is measured.
2. The same run again (same settings, seed and index): the answers and every metric must be
   identical (compared by :func:`eval.runner.results_digest` and the summaries).
3. The hallucination detector on labelled pairs: the guard on the held-out last 20% of
   halueval-sum and halueval-dialogue and on the SciFact claims, beside the two trivial
   baselines (answer length; share of words absent from the source), as ``bench/guard.py``.

4. ``--judge-check N`` (a separate invocation, after a run): RAGAS's LLM faithfulness with the
   configured generator's base model as an in-process judge (``eval.judge_local``) on the first N answered
   questions of the newest stored run, beside the guard-as-faithfulness on the same answers: how
   many judge verdicts fail, seconds per answer, and the ratio. Writes ``eval-judge.json``.

The SQuAD passages are indexed once into ``bench/.work/squad-index`` (shared with
``bench/answer.py``); runs go to a private run store under ``bench/.work/eval``.

    python bench/eval.py                          # 300 questions, twice; ~1 h on 2 cores
    python bench/eval.py --questions 30 --repeat 1 --probe-questions 5    # a quick look
    python bench/eval.py --judge-check 10         # the 135M judge against the guard
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# ``common`` puts the project root first on the path: ``import eval`` then finds the package,
# not this script.
from common import RESULTS_DIR, WORK_DIR, format_table, peak_rss_mb, warn_if_busy, write_results
from guard import held_out

from eval.datasets import load_named
from eval.runner import RunOptions, results_digest, run_evaluation
from eval.runs import RunStore
from rag_app.guard.guard import Guard
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.store.index import IndexStore

GUARD_TASKS = ("sum", "dialogue", "scifact")
HEADLINE = (
    "retrieval.recall@5",
    "retrieval.mrr",
    "retrieval.ndcg@10",
    "answer.em",
    "answer.f1",
    "answer.bleu",
    "answer.rouge_l",
    "answer.semantic_similarity",
    "answer.abstained",
    "guard.grounding",
    "guard.flagged",
    "ragas.faithfulness",
    "ragas.bleu",
    "ragas.rouge_l",
    "ragas.semantic_similarity",
    "ragas.context_recall_nonllm",
    "generator.perplexity",
)


def settings_for(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    settings.data_dir = WORK_DIR / "eval" / "data"
    settings.generator.threads = args.threads
    settings.generator.max_new_tokens = args.max_new_tokens
    settings.embedding.threads = args.threads
    settings.eval.seed = args.seed
    return settings


def one_run(args: argparse.Namespace, label: str) -> tuple[Any, float]:
    """A fresh RAG (models loaded anew) and one evaluation run; returns the record and load seconds."""
    settings = settings_for(args)
    index = WORK_DIR / "squad-index"
    data = load_named("squad-dev")
    rag = RAG(index, settings)
    if not IndexStore.exists(index):
        print(f"indexing {len(data.documents)} SQuAD passages into {index}", flush=True)
        rag.add_documents(data.documents)
    t0 = time.perf_counter()
    rag.search("warm up", k=1)
    _ = rag.generator, rag.guard
    load_s = time.perf_counter() - t0
    options = RunOptions(
        limit=args.questions,
        probes=tuple(p for p in args.probes.split(",") if p),
        probe_questions=args.probe_questions,
        name=label,
        command=" ".join(["python", *sys.argv]),
    )
    done = [0]

    def progress(n: int, total: int, _: str) -> None:
        if n % 25 == 0 or n == total:
            print(f"  {label}: {n}/{total} answers", flush=True)
        done[0] = n

    with RunStore.for_settings(settings) as store:
        record = run_evaluation(rag, data, options, store=store, progress=progress)
        if args.report and label == "run 1":
            from eval.runner import write_run_report

            folder = RESULTS_DIR / "eval-report"
            shutil.rmtree(folder, ignore_errors=True)
            write_run_report(record, folder, store)
    rag.close()
    return record, load_s


def summary_table(record: Any) -> str:
    rows = []
    for name in HEADLINE:
        m = record.summary.get(name)
        if m is None:
            continue
        rows.append([name, m.mean, m.ci_low, m.ci_high, m.n, m.failed])
    return format_table(["metric", "mean", "ci low", "ci high", "n", "failed"], rows)


def figures(record: Any, load_s: float) -> dict[str, Any]:
    answered = [r for r in record.results if not r.abstained]
    return {
        "run_id": record.id,
        "answers": len(record.results),
        "wall_seconds": record.wall_seconds,
        "seconds_per_100_questions": record.manifest["seconds_per_100_questions"],
        "phase_seconds": record.manifest["phase_seconds"],
        "model_load_seconds": round(load_s, 1),
        "answered": len(answered),
        "summary": {k: v.to_dict() for k, v in record.summary.items()},
        "ragas": record.manifest.get("ragas"),
        "hallucination": {k: v for k, v in record.hallucination.items() if k not in ("worst", "answers")},
        "probes": {k: v.get("summary") for k, v in record.probes.items()},
        "digest": results_digest(record.results),
    }


def guard_figures(settings: Settings) -> dict[str, Any]:
    from rag_app.embeddings import create_embedder

    guard = Guard(create_embedder(settings))
    guard.warm_up()
    out = {}
    for task in GUARD_TASKS:
        out[task] = held_out(guard, task)
        m = out[task]
        print(
            f"guard on {task}: accuracy {m['guard']['accuracy']} F1 {m['guard']['f1']} "
            f"AUROC {m['guard']['auroc']}"
            f" | length {m['length']['accuracy']} | unseen words {m['unseen']['accuracy']}",
            flush=True,
        )
    return out


def judge_check(args: argparse.Namespace) -> dict[str, Any]:
    """RAGAS LLM faithfulness judged by the local generator vs the guard, on stored answers."""
    import collections

    from eval.ragas_metrics import score_ragas
    from eval.types import SampleResult
    from rag_app.embeddings import create_embedder
    from rag_app.generation import create_generator
    from rag_app.prompting import strip_citations

    settings = settings_for(args)
    settings.eval.judge_local = True
    settings.eval.judge_max_workers = 1
    settings.eval.judge_max_new_tokens = args.judge_max_new_tokens
    with RunStore.for_settings(settings) as store:
        record = store.get("latest")
        samples = store.samples(record.id)
    answered = [r for r in record.results if not r.abstained and not r.error and r.replicate == 0]
    chosen = answered[: args.judge_check]
    copies = [SampleResult.from_dict(r.to_dict() | {"metrics": {}, "errors": {}}) for r in chosen]
    embedder = create_embedder(settings)
    judge_settings = settings.model_copy(deep=True)
    judge_settings.generator.adapter = None  # as eval.runner.local_judge: the base model judges
    generator = create_generator(judge_settings)
    generator.generate([{"role": "user", "content": "warm up"}], max_new_tokens=4)
    t0 = time.perf_counter()
    outcome = score_ragas(
        copies,
        samples,
        embedder=embedder,
        guard=None,
        eval_settings=settings.eval,
        judge_generator=generator,
        llm_metric_names=["faithfulness_llm"],
    )
    judge_s = time.perf_counter() - t0
    guard = Guard(embedder)
    guard.warm_up()
    t0 = time.perf_counter()
    guard_scores = [
        guard.check(strip_citations(r.answer), [p.text for p in r.passages]).score for r in chosen
    ]
    guard_s = time.perf_counter() - t0
    values = [c.metrics.get("ragas.faithfulness_llm") for c in copies]
    reasons = collections.Counter(
        c.errors.get("ragas.faithfulness_llm", "").split(":")[0]
        for c in copies
        if c.errors.get("ragas.faithfulness_llm")
    )
    ok = [v for v in values if v is not None]
    figures = {
        "run_id": record.id,
        "answers": len(chosen),
        "judge": getattr(generator, "model_id", ""),
        "judge_max_new_tokens": args.judge_max_new_tokens,
        "judge_calls": outcome.judge_calls,
        "judge_failed": len(values) - len(ok),
        "judge_failure_reasons": dict(reasons),
        "judge_mean_of_scored": round(sum(ok) / len(ok), 4) if ok else None,
        "judge_seconds_per_answer": round(judge_s / max(len(chosen), 1), 2),
        "judge_seconds_per_call": round(judge_s / max(outcome.judge_calls, 1), 2),
        "guard_failed": 0,
        "guard_mean": round(sum(guard_scores) / max(len(guard_scores), 1), 4),
        "guard_seconds_per_answer": round(guard_s / max(len(chosen), 1), 4),
        "judge_over_guard_seconds": round(judge_s / max(guard_s, 1e-9), 1),
        "pairs": [
            {
                "question": r.question,
                "judge": v,
                "guard": round(g, 4),
                "error": c.errors.get("ragas.faithfulness_llm"),
            }
            for r, c, v, g in zip(chosen, copies, values, guard_scores, strict=True)
        ],
    }
    print(
        f"judge (local {figures['judge']}): {figures['judge_failed']}/{len(chosen)} failed, "
        f"{figures['judge_seconds_per_answer']} s per answer; guard: 0 failed, "
        f"{figures['guard_seconds_per_answer']} s per answer ({figures['judge_over_guard_seconds']}x)",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="identical runs (2 checks reproducibility)")
    parser.add_argument("--probes", default="bias,robustness,injection")
    parser.add_argument("--probe-questions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and ONNX threads (1: steady on a busy box)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--no-report", dest="report", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "eval-squad.json")
    parser.add_argument("--judge-check", type=int, default=0, help="only: N answers through the local judge")
    parser.add_argument("--judge-max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    if args.judge_check:
        load_before = warn_if_busy("start")
        payload = {"settings": vars(args) | {"out": str(args.out)}, **judge_check(args)}
        path = write_results(RESULTS_DIR / "eval-judge.json", payload, load_before)
        print(f"wrote {path}")
        return

    load_before = warn_if_busy("start")
    runs = []
    for i in range(args.repeat):
        record, load_s = one_run(args, f"run {i + 1}")
        runs.append(figures(record, load_s))
        print(summary_table(record), flush=True)
        print(f"run {i + 1}: {runs[-1]['seconds_per_100_questions']} s per 100 questions", flush=True)
    same = None
    if len(runs) > 1:
        same = all(r["digest"] == runs[0]["digest"] and r["summary"] == runs[0]["summary"] for r in runs[1:])
        print(f"identical answers and metrics across {len(runs)} runs: {same}", flush=True)
    guard = guard_figures(settings_for(args))
    payload = {
        "settings": vars(args) | {"out": str(args.out)},
        "runs": runs,
        "reproducible": same,
        "guard_on_labelled_data": guard,
        "peak_rss_mb": peak_rss_mb(),
        "report": str(RESULTS_DIR / "eval-report") if args.report else None,
    }
    path = write_results(args.out, payload, load_before)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
