"""Alignment on the default 0.5B generator: base vs SFT vs SFT -> DPO vs RLHF, in one run.

1. Preference pairs (``finetune.preferences``) from SQuAD dev articles 1-16 (rule negatives and
   the base model's own wrong answers) and HaluEval QA pairs 0-3,999.
2. SFT: rag-app's packaged reader adapter for the 0.5B (``finetune/reader.py``: LoRA SFT on
   HaluEval QA 0-3,999, short cited answers and the abstention sentence).
3. A reward model (LoRA + a scalar head over the 0.5B), DPO on top of the SFT adapter, and RLHF
   (GRPO, the policy starting from the SFT adapter, the reward = the reward model + the guard's
   support - citation penalty + abstention bonus), each for a fixed budget of minutes.
4. Measured on what training never saw: SQuAD articles 17-24 (``--questions`` answerable plus
   ``--removed`` whose passage is removed from the index; ``bench/answer.py``'s split and scoring,
   through ``RAG.stream`` with the guard) and HaluEval QA pairs 4,000-4,999 (``--halueval``
   pairs: the reward model's and the guard's pairwise accuracy).

Per system: EM/F1, wrong answers shown, abstention accuracy, the gold passage cited; per trained
recipe: tokens/s of training. SFT -> DPO against the base: the paired bootstrap and sign-flip
test of ``rag-app eval compare`` (``eval.stats.compare_runs``) on wrong-shown and F1.

    python bench/align.py --questions 60 --removed 15 --halueval 100 --validation 20 --model-negatives 40
    python bench/align.py --dpo-minutes 60 --questions 300 --removed 60 --halueval 1000   # the full protocol
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from answer import (
    DATA,
    RagAppSystem,
    build_rag_index,
    score_row,
    squad_split,
    summarize,
)
from common import REPO_ROOT, RESULTS_DIR, WORK_DIR, format_table, peak_rss_mb, warn_if_busy, write_results

from finetune.config import (
    DPORecipe,
    LoraArgs,
    PreferenceData,
    PreferenceRecipe,
    RewardRecipe,
    RLHFRecipe,
    TrainArgs,
)
from rag_app.settings import Settings

MODEL = "Qwen2.5-Coder-0.5B-Instruct"
HALUEVAL = REPO_ROOT.parent / "shared" / "data" / "halueval-qa" / "qa_pairs.jsonl"
LORA = LoraArgs(r=16, alpha=32, top_layers=8)
"""LoRA on the last 8 of 24 layers: a CPU step costs about half of all-layer LoRA."""


def build_pairs(out: Path, model_negatives: int, settings: Settings) -> dict[str, Any]:
    from finetune.preferences import write_preferences

    recipe = PreferenceRecipe(
        squad=DATA,
        articles=(1, 16),
        halueval=HALUEVAL,
        halueval_pairs=(0, 3999),
        model_negatives=model_negatives,
        model=MODEL,
        max_per_type=600,
        out=out,
    )
    return write_preferences(recipe, settings)


def train_args(out: Path, minutes: float, lr: float, **extra: Any) -> TrainArgs:
    return TrainArgs(
        output_dir=out,
        max_steps=10_000,
        max_minutes=minutes,
        learning_rate=lr,
        batch_size=extra.pop("batch_size", 2),
        max_seq_length=768,
        logging_steps=extra.pop("logging_steps", 5),
        **extra,
    )


def halueval_eval_rows(pairs: int) -> list[dict[str, Any]]:
    from finetune.preferences import halueval_pairs

    rows = halueval_pairs(HALUEVAL, (4000, 4999))
    return random.Random(0).sample(rows, min(pairs, len(rows)))


def evaluate_systems(
    systems: dict[str, str | None], questions: int, removed: int, settings: Settings
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Each system (name -> adapter folder or None) over the same SQuAD test questions, in turns."""
    from rag_app.rag import RAG

    split = squad_split(DATA, "test", questions, removed, 0)
    index = build_rag_index(WORK_DIR / "squad-removed-0-index", split.passages, settings)
    asks = {}
    for name, adapter in systems.items():
        s = settings.model_copy(deep=True)
        s.generator.adapter = adapter
        asks[name] = RagAppSystem(RAG(index.index_dir, s, embedder=index.embedder)).ask
        asks[name]("What is this collection about?")  # warm-up
    items = [(q, True) for q in split.answerable] + [(q, False) for q in split.unanswerable]
    random.Random(2).shuffle(items)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for i, (item, answerable) in enumerate(items):
        order = list(systems)[i % len(systems) :] + list(systems)[: i % len(systems)]
        for name in order:
            rows[name].append(score_row(asks[name](item["question"]), item, answerable))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(items)} questions", flush=True)
    summary = {name: summarize(r, True) for name, r in rows.items()}
    return rows, summary


def significance(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rag-app eval compare``'s paired test (B - A) on wrong-shown and F1 of the answerable questions."""
    from eval.stats import compare_runs
    from eval.types import SampleResult

    def results(rows: list[dict[str, Any]]) -> list[SampleResult]:
        return [
            SampleResult(
                sample_id=r["id"],
                replicate=0,
                question=r["question"],
                answer=r["text"],
                abstained=r["abstained"],
                metrics={"wrong_shown": float(not r["abstained"] and r["f1"] == 0), "f1": r["f1"]},
            )
            for r in rows
            if r["answerable"]
        ]

    return compare_runs(results(base), results(other), resamples=4000, seed=0)


def main() -> None:
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the log stays readable
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reward-minutes", type=float, default=8.0, help="training budget of the reward model"
    )
    parser.add_argument("--dpo-minutes", type=float, default=20.0, help="training budget of DPO")
    parser.add_argument("--rlhf-minutes", type=float, default=10.0, help="training budget of RLHF")
    parser.add_argument("--questions", type=int, default=80, help="answerable SQuAD test questions")
    parser.add_argument("--removed", type=int, default=20, help="questions whose passage is removed")
    parser.add_argument("--halueval", type=int, default=300, help="HaluEval pairs 4,000-4,999 to score")
    parser.add_argument(
        "--validation", type=int, default=40, help="validation pairs (SQuAD dev + HaluEval 0-3,999)"
    )
    parser.add_argument("--model-negatives", type=int, default=60, help="prompts asked for model_wrong pairs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the pairs and the reward model an interrupted run already made",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "align.json")
    args = parser.parse_args()
    load_before = warn_if_busy("align")
    work = WORK_DIR / "align"
    settings = Settings.load().model_copy(deep=True)
    settings.data_dir = work / "data"
    settings.generator.model = MODEL
    settings.generator.threads = args.threads
    from rag_app.generation import packaged_adapter

    sft_adapter = packaged_adapter(MODEL)
    if sft_adapter is None:
        raise SystemExit(f"the packaged reader adapter of {MODEL} is missing")
    result: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}, "recipes": {}}
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    card_path = work / "pairs" / "data_card.json"
    if args.reuse and card_path.is_file():
        card = json.loads(card_path.read_text(encoding="utf-8"))
    else:
        card = build_pairs(work / "pairs", args.model_negatives, settings)
    timings["pairs_s"] = time.perf_counter() - t0
    result["pairs"] = {k: card[k] for k in ("rows", "per_type", "groups")}
    print(json.dumps(result["pairs"], indent=1), flush=True)
    pairs = work / "pairs"
    data = PreferenceData(
        train=pairs / "train.jsonl",
        validation=pairs / "validation.jsonl",
        max_validation_rows=args.validation,
    )

    from finetune.dpo import dpo
    from finetune.reward import RewardModel, guard_reward, pairwise_accuracy, train_reward
    from finetune.rlhf import rlhf

    stamp = time.strftime("%Y%m%d-%H%M%S")
    from finetune.common import RunResult

    saved = work / "reward" / "result.json"
    reward = (
        RunResult(
            **{k: v for k, v in json.loads(saved.read_text(encoding="utf-8")).items() if k != "adapter_name"}
        )
        if args.reuse and saved.is_file()
        else None
    )
    reward = reward or train_reward(
        RewardRecipe(
            model=MODEL, data=data, lora=LORA, name=f"align-reward-{stamp}",
            train=train_args(work / "reward", args.reward_minutes, 2e-4, threads=args.threads),
        ),
        settings,
    )  # fmt: skip
    result["recipes"]["reward"] = reward.metrics
    halu = halueval_eval_rows(args.halueval)
    scorer = RewardModel.load(str(reward.weights), settings)
    result["halueval_4000_4999"] = {
        "pairs": len(halu),
        **pairwise_accuracy(halu, scorer.score_rows, prefix="reward"),
        **pairwise_accuracy(halu, guard_reward(settings), prefix="guard"),
    }
    print(json.dumps(result["halueval_4000_4999"]), flush=True)
    del scorer
    gc.collect()

    dpo_run = dpo(
        DPORecipe(
            model=MODEL, sft_adapter=str(sft_adapter), data=data,
            train=train_args(work / "dpo", args.dpo_minutes, 1e-4, threads=args.threads), lora=LORA, beta=0.1,
            name=f"align-dpo-{stamp}",
        ),
        settings,
    )  # fmt: skip
    result["recipes"]["dpo"] = dpo_run.metrics
    gc.collect()
    rl_run = rlhf(
        RLHFRecipe(
            model=MODEL, sft_adapter=str(sft_adapter), data=PreferenceData(train=data.train, validation=None),
            train=train_args(
                work / "rlhf", args.rlhf_minutes, 5e-5, batch_size=4, logging_steps=1, threads=args.threads
            ),
            lora=LORA, reward_model=str(reward.weights), num_generations=4, max_completion_length=32,
            name=f"align-rlhf-{stamp}",
        ),
        settings,
    )  # fmt: skip
    result["recipes"]["rlhf"] = rl_run.metrics
    gc.collect()

    systems = {
        "base": None,
        "sft": str(sft_adapter),
        "sft-dpo": str(dpo_run.weights),
        "rlhf": str(rl_run.weights),
    }
    t0 = time.perf_counter()
    rows, summary = evaluate_systems(systems, args.questions, args.removed, settings)
    timings["evaluation_s"] = time.perf_counter() - t0
    result["summary"] = summary
    result["significance_sft_dpo_vs_base"] = significance(rows["base"], rows["sft-dpo"])
    result["significance_rlhf_vs_base"] = significance(rows["base"], rows["rlhf"])
    result["timings"] = {k: round(v, 1) for k, v in timings.items()}
    result["peak_rss_mb"] = peak_rss_mb()
    keep = ("id", "question", "answers", "answerable", "text", "draft", "abstained", "code", "score", "f1",
            "contains", "cites_gold", "total_s")  # fmt: skip
    result["answers"] = {n: [{k: r.get(k) for k in keep} for r in rs] for n, rs in rows.items()}
    write_results(args.out, result, load_before)
    print(table(result))


def table(result: dict[str, Any]) -> str:
    headers = ["system", "EM", "F1", "contains gold", "wrong shown", "abstention acc", "cites gold", "p50 s"]
    rows = [
        [
            name,
            s["exact_match"],
            s["f1"],
            s["contains_gold"],
            s["wrong_shown"],
            s["abstention_accuracy"],
            s["cites_gold_of_shown"],
            round(s["total"]["p50_ms"] / 1000, 2),
        ]
        for name, s in result["summary"].items()
    ]
    return format_table(headers, rows)


if __name__ == "__main__":
    main()
