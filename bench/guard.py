"""The hallucination guard on held-out data, beside the trivial baselines, and its latency.

Trains nothing: loads the shipped model (``rag_app/guard/guard-model.json``, or ``--model``) and
scores the held-out 20% of each task (the last 20% of group ids, :mod:`finetune.guard.data`) through
the public :meth:`Guard.score`. The two baselines (answer length, share of unseen words) are
one-number thresholds fitted on the learning 80%, as in the issue.

Latency: :meth:`Guard.check` of a three-sentence answer, each sentence citing one source, over
five chunks of about 250 tokens cut from held-out news articles; every call gets new chunks and a
new answer (nothing is in the guard's embedding cache), after 5 warm-up calls.

    python bench/guard.py                      # all tasks, writes bench/results/guard.json
    python bench/guard.py --tasks sum --calls 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS_DIR, format_table, latency_summary, load_average, warn_if_busy, write_results

from finetune.guard.data import READERS, Example, read_summarization, split
from finetune.guard.evaluate import baseline, metrics
from rag_app.embeddings import create_embedder
from rag_app.guard.guard import Guard
from rag_app.guard.model import DEFAULT_MODEL
from rag_app.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = ("sum", "dialogue", "scifact", "qa")
CHUNK_TOKENS = 250
CHUNKS = 5
SENTENCES = 3
WARMUP = 5


def held_out(guard: Guard, task: str) -> dict[str, Any]:
    """Guard and baseline metrics on the held-out rows of ``task``; for QA also at the short-answer
    threshold the guard applies to a few-word answer (:attr:`Guard.short_threshold`)."""
    learn, report = split(READERS[task](DATA))
    t0 = time.perf_counter()
    score = guard.score(
        [e.claim for e in report], [e.passages[0] for e in report], [e.context for e in report]
    )
    seconds = time.perf_counter() - t0
    out = {
        "guard": metrics([e.supported for e in report], score),
        "length": baseline(learn, report, "length"),
        "unseen": baseline(learn, report, "unseen"),
        "scoring_seconds": round(seconds, 1),
    }
    if task == "qa":
        short = guard.short_threshold
        out["guard_at_short_threshold"] = {
            "threshold": short,
            **metrics([e.supported for e in report], score, short),
        }
        hallucinated = [s for s, e in zip(score, report, strict=True) if not e.supported]
        out["hallucinated_passed"] = {
            "at_0.5": round(float(np.mean([s >= 0.5 for s in hallucinated])), 4),
            f"at_{short}": round(float(np.mean([s >= short for s in hallucinated])), 4),
        }
    return out


def calibrate_qa(guard: Guard, model_path: Path) -> dict[str, Any]:
    """Fit the short-answer threshold on the learning 80% of HaluEval QA (pairs 0-3,999) for the best
    accuracy, and store it in the guard model file's ``info`` (the held-out pairs are never seen)."""
    learn, _ = split(READERS["qa"](DATA))
    score = guard.score([e.claim for e in learn], [e.passages[0] for e in learn], [e.context for e in learn])
    supported = [e.supported for e in learn]
    best = max((metrics(supported, score, t / 100)["accuracy"], t / 100) for t in range(5, 96))
    data = json.loads(model_path.read_text(encoding="utf-8"))
    data["info"]["short_threshold"] = best[1]
    data["info"]["short_threshold_fit"] = {
        "data": "HaluEval QA, learning 80% of pair ids (0-3999)",
        "accuracy": best[0],
        "n": len(learn),
    }
    model_path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    guard._model = None  # reload with the new threshold
    return {"short_threshold": best[1], "learn_accuracy": best[0]}


def _chunks(guard: Guard, document: str) -> list[str]:
    """``document`` cut into consecutive pieces of :data:`CHUNK_TOKENS` embedder tokens (a shorter
    last piece is left out)."""
    offsets = guard.embedder.tokenizer.encode(document, add_special_tokens=False).offsets
    return [
        document[offsets[i][0] : offsets[i + CHUNK_TOKENS - 1][1]]
        for i in range(0, len(offsets) - CHUNK_TOKENS + 1, CHUNK_TOKENS)
    ]


def latency_cases(guard: Guard, examples: list[Example], n: int) -> list[tuple[str, list[str]]]:
    """(answer, chunks) pairs: five ~250-token chunks from articles, three cited summary sentences."""
    from rag_app.guard.text import split_sentences

    cases: list[tuple[str, list[str]]] = []
    pool = [e for e in examples if e.supported]
    for i in range(0, len(pool) - 1, 2):
        chunks = (_chunks(guard, pool[i].passages[0]) + _chunks(guard, pool[i + 1].passages[0]))[:CHUNKS]
        sentences = [s.text.rstrip(".") for s in split_sentences(pool[i].claim)][:SENTENCES]
        if len(chunks) < CHUNKS or len(sentences) < SENTENCES:
            continue
        cases.append((" ".join(f"{s} [{k + 1}]." for k, s in enumerate(sentences)), chunks))
        if len(cases) == n:
            break
    return cases


def latency(guard: Guard, calls: int) -> dict[str, Any]:
    """p50/p95 of :meth:`Guard.check` for 3 sentences over 5 chunks (each call on new text)."""
    _, report = split(read_summarization(DATA))
    cases = latency_cases(guard, report, calls + WARMUP)
    guard.warm_up()
    seconds, cpu = [], []
    for k, (answer, chunks) in enumerate(cases):
        t0, c0 = time.perf_counter(), time.process_time()
        guard.check(answer, chunks)
        if k >= WARMUP:
            seconds.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    tokens = [len(guard.embedder.tokenizer.encode(c).ids) for _, chunks in cases for c in chunks]
    return {
        "sentences": SENTENCES,
        "chunks": CHUNKS,
        "chunk_tokens_mean": round(float(np.mean(tokens)), 1),
        "warmup_calls": WARMUP,
        "embedder_threads": getattr(guard.embedder, "threads", None),
        **latency_summary(seconds),
        "cpu_time": latency_summary(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--tasks", nargs="*", choices=TASKS, default=list(TASKS), help="none: latency only")
    parser.add_argument("--calls", type=int, default=100, help="timed check() calls")
    parser.add_argument("--threads", type=int, default=0, help="embedder threads (0: settings, all cores)")
    parser.add_argument(
        "--calibrate-qa",
        action="store_true",
        help="first fit the short-answer threshold on HaluEval QA's learning split and save it in --model",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "guard.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (see ../shared/data/README.md)")

    load_before = warn_if_busy("start")
    settings = Settings.load()
    if args.threads:
        settings.embedding.threads = args.threads
    guard = Guard(create_embedder(settings), model_path=args.model)
    guard.warm_up()
    calibration = calibrate_qa(guard, args.model) if args.calibrate_qa else None
    if calibration:
        print(f"short-answer threshold: {calibration}")
    tasks = {}
    for task in args.tasks:
        tasks[task] = held_out(guard, task)
        m = tasks[task]
        print(
            f"{task}: guard {m['guard']}  length {m['length']['accuracy']}  unseen {m['unseen']['accuracy']}"
        )
    timing = latency(Guard(guard.embedder, model_path=args.model), args.calls)
    load_after = load_average()
    print(
        f"check() latency: p50 {timing['p50_ms']} ms, p95 {timing['p95_ms']} ms, "
        f"CPU time p50 {timing['cpu_time']['p50_ms']} ms (load {load_before} -> {load_after})"
    )

    rows = []
    for task, m in tasks.items():
        for name in ("guard", "length", "unseen"):
            rows.append([task, name, m[name]["accuracy"], m[name]["f1"], m[name]["auroc"], m[name]["n"]])
    print(format_table(["task", "method", "accuracy", "F1", "AUROC", "n"], rows))
    target = [tasks[t]["guard"]["accuracy"] for t in ("sum", "dialogue") if t in tasks]
    payload = {
        "model": str(args.model),
        "model_bytes": args.model.stat().st_size,
        "model_info": {k: v for k, v in guard.model.info.items() if k != "held_out"},
        "embedder": guard.embedder.model_id,
        "protocol": "held-out 20% of group ids per task; baselines are thresholds fitted on the other 80%; "
        "F1 and AUROC treat hallucinated as the positive class",
        "mean_accuracy_sum_dialogue": round(float(np.mean(target)), 4) if target else None,
        "short_threshold": guard.short_threshold,
        "calibration": calibration,
        "tasks": tasks,
        "latency": timing,
    }
    path = write_results(args.out, payload, load_before)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
