"""The loop's training side: the iteration's data (its failures, earlier iterations' replayed, the
current model's right answers as rehearsal rows) and the candidate adapter trained on it (SFT, then
DPO on top)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from eval.loop import LoopSettings


def replay_failures(iterations: Sequence[dict[str, Any]], failures: Path) -> list[str]:
    """Append the failures of earlier iterations (those still on disk) to ``failures``, each
    question once; returns the iteration folders replayed."""
    seen = {json.loads(line).get("id") for line in failures.read_text(encoding="utf-8").splitlines() if line}
    replayed = []
    with failures.open("a", encoding="utf-8") as out:
        for record in iterations:
            earlier = Path(record.get("work_dir", "")) / "failures.jsonl"
            if not earlier.is_file() or earlier.resolve() == failures.resolve():
                continue
            replayed.append(str(earlier.parent))
            for line in earlier.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else None
                if row is not None and row.get("id") not in seen:
                    seen.add(row.get("id"))
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return replayed


def training_data(
    work: Path, loop: LoopSettings, pool_results: Sequence[Any], pool_samples: Mapping[str, Any]
) -> tuple[Path, Path, dict[str, str], dict[str, Any]]:
    """SFT rows (:mod:`eval.loop_data`: the failures to fix, the current model's right pool answers
    replayed, capped abstentions) and preference pairs from the labelled failures; returns their
    folders, the data hashes and the SFT rows' counts."""
    from eval.loop_data import write_loop_sft
    from finetune.config import PreferenceRecipe
    from finetune.data import file_sha256
    from finetune.preferences import write_preferences

    failures = work / "failures.jsonl"
    if not failures.is_file() or not failures.read_text(encoding="utf-8").strip():
        raise ConfigError("no labelled failures to train on: label the queued questions, or widen the pool")
    sft_dir, pairs_dir = work / "sft-data", work / "pairs"
    card = write_loop_sft(
        failures, sft_dir, pool_results, pool_samples,
        replay_share=loop.replay_share, max_not_found_share=loop.max_not_found_share, seed=loop.seed,
    )  # fmt: skip
    write_preferences(
        PreferenceRecipe(
            squad=None,
            halueval=loop.halueval,
            halueval_pairs=loop.halueval_pairs,
            jsonl=failures,
            unanswerable_share=loop.max_not_found_share,  # questions shown without their passage
            seed=loop.seed,
            max_per_type=loop.pairs_per_type,
            out=pairs_dir,
        )
    )
    hashes = {"failures": file_sha256(failures), "sft": file_sha256(sft_dir / "train.jsonl")}
    hashes["pairs"] = file_sha256(pairs_dir / "train.jsonl")
    return sft_dir, pairs_dir, hashes, card["rows"]


def train_candidate(
    sft_dir: Path, pairs_dir: Path, parent: str | None, settings: Any, loop: LoopSettings
) -> str:
    """SFT of a new LoRA adapter on the base model, then DPO on top of it; returns the registered
    name of the candidate. (The parent is recorded as lineage; its training data is not replayed.)"""
    from finetune.config import DataSource, DPORecipe, LoraArgs, PreferenceData, SFTRecipe, TrainArgs
    from finetune.dpo import dpo
    from finetune.sft import sft

    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = settings.generator.model
    minutes = loop.budget_minutes / (2 if loop.method == "sft-dpo" else 1)
    lora = LoraArgs(r=loop.lora_rank, alpha=2 * loop.lora_rank, top_layers=loop.top_layers)
    work = sft_dir.parent

    def args(out: str, lr: float) -> TrainArgs:
        return TrainArgs(output_dir=work / out, max_steps=10_000, max_minutes=minutes, learning_rate=lr,
                         batch_size=2, max_seq_length=768, threads=loop.threads, logging_steps=5)  # fmt: skip

    sft_name = f"loop-sft-{stamp}"
    sft(
        SFTRecipe(
            model=model, data=DataSource(train=sft_dir / "train.jsonl", validation=None),
            train=args("sft", 2e-4), lora=lora, name=sft_name,
        ),
        settings,
    )  # fmt: skip
    if loop.method == "sft":
        return sft_name
    dpo_name = f"loop-dpo-{stamp}"
    dpo(
        DPORecipe(
            model=model, sft_adapter=sft_name, train=args("dpo", 5e-5), lora=lora, name=dpo_name,
            data=PreferenceData(train=pairs_dir / "train.jsonl", validation=None),
        ),
        settings,
    )  # fmt: skip
    return dpo_name
