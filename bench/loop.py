"""The retraining loop on the default 0.5B generator: base -> iteration 1 -> iteration 2.

Each iteration is ``rag-app loop run`` (``eval.loop.run_iteration``) with:

* the **frozen split**: SQuAD dev articles 17-24, ``--frozen`` answerable questions plus
  ``--removed`` whose passage is not in the index (right answer: abstain); ``bench/answer.py``'s
  split and index, so the numbers sit beside the answer benchmark's;
* the **training pool**: answerable questions of articles 1-16 (``--pool`` of them answered per
  iteration, a seeded draw), failures selected by ``eval select``;
* HaluEval QA pairs 0-4,999 as extra preference pairs (used when the method includes DPO);
* the gate: the paired bootstrap of ``eval compare`` on F1, with wrong answers shown, abstention
  accuracy and latency as guard rails.

Reported: the frozen-split metrics of each evaluated adapter with 95 % intervals, each decision
and its evidence, the promoted adapter against the base (paired), and wall time per stage.

    python bench/loop.py --iterations 2 --frozen 60 --removed 15 --pool 80 --budget-minutes 16
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from answer import DATA, build_rag_index, squad_split
from common import (
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    peak_rss_mb,
    read_jsonl,
    warn_if_busy,
    write_results,
)

from rag_app.settings import Settings

HALUEVAL = REPO_ROOT.parent / "shared" / "data" / "halueval-qa" / "qa_pairs.jsonl"
TRAIN_ARTICLES = (1, 16)


def write_datasets(folder: Path, frozen: int, removed: int) -> tuple[Path, Path, Any]:
    """The frozen split (test articles) and the training pool (dev articles) as JSONL datasets."""
    split = squad_split(DATA, "test", frozen, removed, 0)
    text = {p["_id"]: p["text"] for p in read_jsonl(DATA / "passages.jsonl")}
    folder.mkdir(parents=True, exist_ok=True)
    frozen_path, pool_path = folder / "frozen.jsonl", folder / "pool.jsonl"
    with frozen_path.open("w", encoding="utf-8") as out:
        for q in split.answerable:
            row = {"id": q["id"], "question": q["question"], "answers": q["answers"],
                   "contexts": [text[q["context_id"]]], "metadata": {"title": q["title"]}}  # fmt: skip
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        for q in split.unanswerable:  # its passage is not in the index: the right answer is to abstain
            row = {"id": q["id"], "question": q["question"], "answers": [],
                   "metadata": {"title": q["title"], "unanswerable": True}}  # fmt: skip
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    qa = list(read_jsonl(DATA / "qa.jsonl"))
    titles = list(dict.fromkeys(q["title"] for q in qa))
    side = set(titles[TRAIN_ARTICLES[0] - 1 : TRAIN_ARTICLES[1]])
    pool = [q for q in qa if q["title"] in side and q["context_id"] not in split.removed_ids]
    random.Random(0).shuffle(pool)
    with pool_path.open("w", encoding="utf-8") as out:
        for q in pool:
            row = {"id": q["id"], "question": q["question"], "answers": q["answers"],
                   "contexts": [text[q["context_id"]]], "metadata": {"title": q["title"]}}  # fmt: skip
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return frozen_path, pool_path, split


def run_summary(store: Any, run_id: str, samples: dict[str, Any]) -> dict[str, Any]:
    """Frozen-split means with 95 % bootstrap intervals, and the answers (to read)."""
    from eval.loop import gate_results
    from eval.stats import summarize

    record = store.get(run_id)
    rows = gate_results(record.results, samples, "f1")
    out: dict[str, Any] = {"run": run_id, "questions": len(rows)}
    for metric in ("f1", "wrong_shown", "abstention_correct", "latency_s"):
        m = summarize(rows, metric, resamples=4000, seed=0)
        if m.mean is not None:
            out[metric] = {"mean": m.mean, "ci95": [m.ci_low, m.ci_high], "n": m.n}
    out["answers"] = [
        {
            "id": r.sample_id,
            "question": r.question,
            "answer": r.answer,
            "abstained": r.abstained,
            "gold": samples[r.sample_id].answers[:1],
            "f1": r.metrics.get("answer.f1"),
        }
        for r in record.results
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--frozen", type=int, default=60, help="Answerable frozen questions.")
    parser.add_argument("--removed", type=int, default=15, help="Frozen questions whose passage is removed.")
    parser.add_argument("--pool", type=int, default=80, help="Pool questions answered per iteration.")
    parser.add_argument("--select", type=int, default=60, help="Failures kept for training.")
    parser.add_argument(
        "--calibrate", type=int, default=48,
        help="Other pool questions the candidate answers to fit its own verdict (0: lexical verdict).",
    )  # fmt: skip
    parser.add_argument(
        "--budget-minutes", default="16", help="Each iteration's training minutes, comma-separated."
    )
    parser.add_argument(
        "--methods", default="sft-dpo", help="Each iteration's method, comma-separated (the last repeats)."
    )
    parser.add_argument(
        "--replay-share", type=float, default=0.5,
        help="Right pool answers replayed on the model's own answer, as a share of the failure rows.",
    )  # fmt: skip
    parser.add_argument(
        "--max-not-found-share", type=float, default=0.1,
        help="Most SFT rows with the abstention target (only where the passage is absent).",
    )  # fmt: skip
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--top-layers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="Start from an empty registry.")
    parser.add_argument(
        "--ship", action="store_true",
        help="Export the promoted adapter as the packaged default (rag_app/adapters/); none: nothing.",
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true", help="Run no iteration: report the iterations recorded so far."
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "loop.json")
    args = parser.parse_args()
    load_before = warn_if_busy("loop")

    from eval.datasets import load_dataset
    from eval.loop import LoopSettings, gate_results, run_iteration
    from eval.runs import RunStore
    from eval.stats import compare_runs
    from finetune.registry import Registry

    work = WORK_DIR / "loop"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    settings = Settings()
    settings.data_dir = work / "data"
    frozen_path, pool_path, split = write_datasets(work / "datasets", args.frozen, args.removed)
    index = build_rag_index(WORK_DIR / "squad-removed-0-index", split.passages, settings)
    index.close()
    loop = LoopSettings(
        index=WORK_DIR / "squad-removed-0-index", dataset=str(pool_path), frozen_dataset=str(frozen_path),
        eval_limit=None, pool_limit=args.pool, select_n=args.select, calibration_limit=args.calibrate,
        lora_rank=args.lora_rank, top_layers=args.top_layers, replay_share=args.replay_share,
        max_not_found_share=args.max_not_found_share, threads=args.threads,
        halueval=HALUEVAL, halueval_pairs=(0, 4999),
    )  # fmt: skip
    samples = {s.id: s for s in load_dataset(frozen_path).samples}
    for i in range(0 if args.report_only else args.iterations):
        methods = args.methods.split(",")
        budgets = [float(b) for b in args.budget_minutes.split(",")]
        loop.method = methods[min(i, len(methods) - 1)]
        loop.budget_minutes = budgets[min(i, len(budgets) - 1)]
        print(f"iteration {i + 1} of {args.iterations} ({loop.method})", flush=True)
        started = time.perf_counter()
        record = run_iteration(settings, loop, say=lambda line: print(line, flush=True))
        print(f"  {record['candidate']}: {'PROMOTED' if record['promoted'] else 'kept'}: {record['reason']}")
        print(f"  stages: {record['stages']}, wall {time.perf_counter() - started:.0f} s", flush=True)
    records = Registry.from_settings(settings).iterations()  # every iteration so far, this run's and earlier
    if not records:
        raise SystemExit("no loop iterations recorded yet: run without --report-only")

    with RunStore.for_settings(settings) as store:
        evaluated = {"base": run_summary(store, records[0]["runs"]["base"], samples)}
        for i, record in enumerate(records, 1):
            evaluated[f"iteration {i} candidate"] = run_summary(store, record["runs"]["candidate"], samples)
        promoted = Registry.from_settings(settings).promoted()
        versus_base = None
        if promoted is not None:  # the adapter now live against the base model, paired
            run = next(r["runs"]["candidate"] for r in reversed(records) if r["candidate"] == promoted.name)
            versus_base = compare_runs(
                gate_results(store.get(records[0]["runs"]["base"]).results, samples, "f1"),
                gate_results(store.get(run).results, samples, "f1"),
                resamples=4000, seed=0,
            )  # fmt: skip

    payload = {
        "command": "python bench/loop.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("out", "fresh", "report_only")
        ),
        "settings": vars(args) | {"out": str(args.out)},
        "frozen_split": records[0]["frozen_split"],
        "iterations": [{k: v for k, v in r.items() if k not in ("snapshot",)} for r in records],
        "evaluated": evaluated,
        "promoted": promoted.name if promoted else None,
        "promoted_adapter_dir": str(promoted.path) if promoted else None,
        "promoted_vs_base": versus_base,
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.ship and promoted is not None:
        from finetune.export import export_adapter
        from rag_app.generation import DEFAULT_ADAPTERS

        folder = REPO_ROOT / "rag_app" / "adapters" / DEFAULT_ADAPTERS["Qwen2.5-Coder-0.5B-Instruct"]
        payload["shipped"] = export_adapter(Registry.from_settings(settings), promoted.name, folder)
    write_results(args.out, payload, load_before)
    rows = []
    for name, summary in evaluated.items():
        cells = [name]
        for metric in ("f1", "wrong_shown", "abstention_correct", "latency_s"):
            m = summary.get(metric)
            interval = f" [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" if m and m["ci95"][0] is not None else ""
            cells.append(f"{m['mean']:.3f}{interval}" if m else "-")
        rows.append(cells)
    print(format_table(["adapter", "F1", "wrong shown", "abstention acc", "latency s"], rows))
    for i, record in enumerate(records, 1):
        verdict = "PROMOTED" if record["promoted"] else "kept"
        print(f"iteration {i}: {verdict}: {record['reason']}; {record['stages']}")


if __name__ == "__main__":
    main()
