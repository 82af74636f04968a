"""LoRA SFT of the packaged generator on grounded SQuAD examples, against the base model, in one run.

Training data: RAFT-style rows built by :mod:`finetune.data` from squad-dev articles 1-16 (the
right paragraph plus distractor paragraphs of the same article, target ``answer [n]``; a share
of rows without the right paragraph, target the app's "not in the documents" sentence).
Evaluation: questions of articles 17-24 (never trained on), same prompt format, asked to the
base model and to the base model with the new adapter (loaded by the app's own transformers
generator, as ``generator.adapter`` does), greedy, in this same run.

Reported: SQuAD EM/F1 on answerable questions (citation marks stripped first), the share of
answers citing exactly the right source, the share the guard flags, abstention accuracy on the
questions whose answer is not in the shown sources, false abstentions, training steps/s and
peak memory, and the load average (the machine is shared).

    python bench/finetune.py                                   # writes bench/results/finetune.json
    python bench/finetune.py --train-minutes 10 --eval-questions 36 --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This file is named like the ``finetune`` package: take its folder off the front of the path so
# ``import finetune`` finds the package, and put it at the end for the ``common`` helpers.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from common import (  # noqa: E402 (after the path fix above)
    REPO_ROOT,
    RESULTS_DIR,
    WORK_DIR,
    format_table,
    load_average,
    peak_rss_mb,
    warn_if_busy,
    write_results,
)

from eval.answer_metrics import best_over_truths, exact_match, token_f1  # noqa: E402
from finetune.config import DataSource, GroundedDataRecipe, LoraArgs, SFTRecipe, TrainArgs  # noqa: E402
from finetune.data import squad_examples, to_row, write_dataset  # noqa: E402
from finetune.sft import sft  # noqa: E402
from rag_app.prompting import cited_numbers, is_not_found, strip_citations  # noqa: E402
from rag_app.settings import Settings, default_cache_dir  # noqa: E402

SQUAD = REPO_ROOT.parent / "shared" / "data" / "squad-dev"


def build_eval(
    articles: tuple[int, int], n: int, distractors: int, unanswerable: float, seed: int
) -> list[dict]:
    """Held-out chat rows with their passages' texts (for the guard)."""
    passages = {
        p["_id"]: p["text"] for p in map(json.loads, (SQUAD / "passages.jsonl").read_text().splitlines())
    }
    examples = squad_examples(
        SQUAD, articles=articles, distractors=distractors, unanswerable_share=unanswerable, seed=seed
    )
    rng = random.Random(seed)
    picked = rng.sample(examples, min(n, len(examples)))
    rows = [to_row(e, rng) for e in picked]
    for row in rows:
        row["passages"] = [passages[i] for i in row["meta"]["passage_ids"]]
    return rows


def answer_all(generator: Any, rows: list[dict], max_new_tokens: int, label: str) -> list[dict]:
    out = []
    start = time.perf_counter()
    for i, row in enumerate(rows, 1):
        completion = generator.generate(row["prompt"], max_new_tokens=max_new_tokens, temperature=0.0)
        out.append({"text": completion.text, "seconds": completion.timings["total"]})
        if i % 10 == 0:
            print(f"  {label}: {i}/{len(rows)} answered, {time.perf_counter() - start:.0f} s", flush=True)
    return out


def score(rows: list[dict], answers: list[dict], guard: Any) -> dict[str, Any]:
    """EM/F1, citations, guard flags and abstention over the held-out rows."""
    ems, f1s, cite_exact, cite_any, false_abstain, flagged, abstain_ok, words = [], [], [], [], [], [], [], []
    for row, answer in zip(rows, answers, strict=True):
        text = answer["text"]
        meta = row["meta"]
        abstained = is_not_found(text)
        words.append(len(text.split()))
        if not meta["answerable"]:
            abstain_ok.append(float(abstained))
            continue
        false_abstain.append(float(abstained))
        bare = strip_citations(text)
        ems.append(best_over_truths(exact_match, bare, meta["answers"]))
        f1s.append(best_over_truths(token_f1, bare, meta["answers"]))
        numbers = cited_numbers(text)
        cite_exact.append(float(numbers == [meta["cited"]]))
        cite_any.append(float(meta["cited"] in numbers))
        if guard is not None and not abstained:
            grounding = guard.check(text, row["passages"])
            flagged.append(float(bool(grounding.flagged)))

    def mean(values: list[float]) -> float | None:
        return round(statistics.fmean(values), 4) if values else None

    return {
        "answerable": len(ems),
        "unanswerable": len(abstain_ok),
        "exact_match": mean(ems),
        "f1": mean(f1s),
        "correct_citation": mean(cite_exact),
        "cites_right_source": mean(cite_any),
        "guard_flagged": mean(flagged),
        "guard_checked": len(flagged),
        "abstention_accuracy": mean(abstain_ok),
        "false_abstention": mean(false_abstain),
        "mean_answer_words": mean([float(w) for w in words]),
        "generate_seconds_mean": mean([a["seconds"] for a in answers]),
    }


def load_guard(settings: Settings) -> tuple[Any, str]:
    try:
        from rag_app.embeddings import create_embedder
        from rag_app.guard.guard import Guard
    except ImportError as exc:
        return None, f"guard not available: {exc}"
    guard = Guard(create_embedder(settings), threshold=settings.guard.threshold)
    try:
        guard.warm_up()
    except Exception as exc:  # the guard is being finished elsewhere: report, do not fail the run
        return None, f"guard failed to load: {type(exc).__name__}: {exc}"
    return guard, "rag_app.guard.Guard (packaged model)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-rows", type=int, default=400, help="Rows built from articles 1-16.")
    parser.add_argument("--train-minutes", type=float, default=14.0, help="CPU budget for training.")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=640)
    parser.add_argument("--distractors", type=int, default=1)
    parser.add_argument("--validation-rows", type=int, default=16, help="Rows for the eval loss.")
    parser.add_argument("--eval-questions", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=1, help="Torch threads (1 is fastest on a busy machine)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-guard", action="store_true")
    args = parser.parse_args()

    load_before = warn_if_busy("start")
    wall = time.perf_counter()
    work = WORK_DIR / "finetune"
    settings = Settings(
        cache_dir=default_cache_dir(),
        data_dir=work / "registry",
        generator={"threads": args.threads, "max_new_tokens": args.max_new_tokens},
    )
    from finetune.common import base_model_folder

    base = base_model_folder(settings.generator.model, settings)

    card = write_dataset(
        GroundedDataRecipe(
            source="squad",
            path=SQUAD,
            articles=(1, 16),
            distractors=args.distractors,
            unanswerable_share=0.2,
            validation_share=0.05,
            max_rows=args.train_rows,
            seed=args.seed,
            out=work / "data",
        )
    )
    rows = build_eval((17, 24), args.eval_questions, args.distractors, 0.25, args.seed + 1)
    print(f"data: {card['rows']}; held-out questions: {len(rows)}", flush=True)

    from rag_app.generation.transformers_backend import TransformersGenerator

    loads = {"start": load_before}
    t0 = time.perf_counter()
    base_answers = answer_all(TransformersGenerator(settings, folder=base), rows, args.max_new_tokens, "base")
    base_seconds = time.perf_counter() - t0
    loads["after_base_eval"] = load_average()

    recipe = SFTRecipe(
        method="lora",
        model=settings.generator.model,
        data=DataSource(
            train=work / "data" / "train.jsonl",
            validation=work / "data" / "validation.jsonl",
            max_validation_rows=args.validation_rows,
        ),
        train=TrainArgs(
            output_dir=work / "run",
            max_steps=args.max_steps,
            max_minutes=args.train_minutes,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=2,
            lr_scheduler="constant_with_warmup",
            max_seq_length=args.max_seq_length,
            logging_steps=1,
            threads=args.threads,
            seed=args.seed,
        ),
        lora=LoraArgs(r=args.rank, alpha=2 * args.rank, dropout=0.05),
        name=f"bench-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    result = sft(recipe, settings)
    loads["after_training"] = load_average()

    tuned_settings = settings.model_copy(
        update={"generator": settings.generator.model_copy(update={"adapter": str(result.weights)})}
    )
    t0 = time.perf_counter()
    tuned = TransformersGenerator(tuned_settings, folder=base)
    tuned_answers = answer_all(tuned, rows, args.max_new_tokens, "lora")
    tuned_seconds = time.perf_counter() - t0
    loads["after_tuned_eval"] = load_average()

    # loaded last: the guard's model may be trained meanwhile by `rag-app guard train`
    guard, guard_note = (None, "skipped (--no-guard)") if args.no_guard else load_guard(settings)
    base_scores = score(rows, base_answers, guard)
    tuned_scores = score(rows, tuned_answers, guard)
    samples = [
        {
            "question": row["prompt"][-1]["content"].rsplit("Question:", 1)[-1].strip(),
            "gold": row["completion"][0]["content"],
            "base": b["text"],
            "lora": t["text"],
        }
        for row, b, t in list(zip(rows, base_answers, tuned_answers, strict=True))[:12]
    ]
    payload = {
        "setup": {
            "model": settings.generator.model,
            "train_articles": "1-16",
            "eval_articles": "17-24",
            "args": vars(args),
            "data_card_rows": card["rows"],
            "guard": guard_note,
            "cpu_budget": f"training stopped after {args.train_minutes} min or {args.max_steps} steps; "
            f"whole run {round((time.perf_counter() - wall) / 60, 1)} min wall",
        },
        "training": result.metrics | {"loss_history": [round(x, 4) for x in result.loss_history]},
        "adapter": {"name": result.adapter_name, "path": str(result.weights)},
        "base": base_scores | {"eval_seconds": round(base_seconds, 1)},
        "lora": tuned_scores | {"eval_seconds": round(tuned_seconds, 1)},
        "peak_rss_mb": peak_rss_mb(),
        "load_average_during": loads,
        "samples": samples,
    }
    path = write_results(RESULTS_DIR / "finetune.json", payload, load_before)
    keys = ["exact_match", "f1", "correct_citation", "cites_right_source", "guard_flagged",
            "abstention_accuracy", "false_abstention", "mean_answer_words"]  # fmt: skip
    print(format_table(["metric", "base", "lora"], [[k, base_scores[k], tuned_scores[k]] for k in keys]))
    m = result.metrics
    print(f"training: {m['steps']} steps in {m['train_seconds']} s ({m['steps_per_s']} steps/s), "
          f"peak RSS {m['peak_rss_mb']} MiB; load {loads}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
