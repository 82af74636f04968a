"""What a run will cost before it starts: generator and judge calls, tokens, minutes on this machine.

Minutes come from a measurement, never a guess, in this order:

1. ``previous``: the seconds per answer of the newest complete run in the run store that used
   the same generator model and adapter (its answers' measured ``total`` times);
2. ``calibration``: the seconds of answering the dataset's first question now (what
   ``rag-app eval run --dry-run`` does unless told ``--no-calibrate``);
3. otherwise the estimate says it has no time figure (``seconds_per_answer`` is None).

Token counts: a prompt holds at most ``generator.context_tokens`` of sources plus the question
and the system prompt; an answer at most ``generator.max_new_tokens``. Judge calls per answer
follow RAGAS's prompts (:func:`eval.ragas_metrics.estimate_judge_calls`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

PROMPT_OVERHEAD_TOKENS = 200
"""System prompt, source numbering and the question, in generator tokens (measured on SmolLM2: 150-220)."""
JUDGE_TOKENS_PER_CALL = 1500
"""A RAGAS judge prompt with its instructions, few-shot examples and the contexts (typical of 0.4)."""


@dataclass
class CostEstimate:
    """The size of a run and its expected wall time."""

    questions: int
    replicates: int
    generator_calls: int
    probe_calls: int
    judge_calls: int
    prompt_tokens: int
    """Upper bound of the generator's prompt tokens."""
    completion_tokens: int
    """Upper bound of the generator's new tokens."""
    judge_tokens: int
    seconds_per_answer: float | None
    minutes: float | None
    """Expected wall time of the generator calls (answers and probes); None when unmeasured."""
    basis: str
    """Where ``seconds_per_answer`` comes from: ``previous run <id>``, ``calibration`` or ``none``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """What ``--dry-run`` prints."""
        out = [
            f"questions {self.questions} x replicates {self.replicates} = "
            f"{self.generator_calls} generator calls (+ {self.probe_calls} for probes)",
            f"generator tokens: at most {self.prompt_tokens:,} prompt + {self.completion_tokens:,} new",
            f"judge calls: {self.judge_calls} (about {self.judge_tokens:,} tokens)"
            if self.judge_calls
            else "judge calls: 0 (no judge configured: RAGAS LLM metrics are skipped; "
            "faithfulness comes from the guard)",
        ]
        if self.minutes is None:
            out.append("time: unknown (no earlier run with this model; calibration was skipped)")
        else:
            out.append(
                f"time: about {self.minutes:.1f} min on this machine "
                f"({self.seconds_per_answer:.2f} s per answer, from {self.basis})"
            )
        return out


def previous_seconds(store: Any, model: str, adapter: str | None) -> tuple[float, str] | None:
    """Median measured seconds per answer of the newest complete run with this model and adapter."""
    for row in store.runs(limit=20):
        if row["status"] != "complete" or not row["answers"]:
            continue
        record = store.get(row["id"])
        models = record.manifest.get("models", {})
        if models.get("generator") != model or models.get("adapter") != adapter:
            continue
        times = [r.timings["total"] for r in record.results if r.timings.get("total")]
        if times:
            return statistics.median(times), f"previous run {record.id}"
    return None


def calibrate(rag: Any, question: str) -> float:
    """Seconds to answer ``question`` once, after loading the models (load time is not counted)."""
    rag.search(question, k=1)
    _ = rag.generator, rag.guard
    t0 = time.perf_counter()
    rag.ask(question)
    return time.perf_counter() - t0


def estimate(
    *,
    questions: int,
    replicates: int,
    probe_calls: int,
    judge_calls: int,
    settings: Any,
    seconds_per_answer: float | None,
    basis: str,
) -> CostEstimate:
    g = settings.generator
    calls = questions * replicates
    total_calls = calls + probe_calls
    prompt = total_calls * (g.context_tokens + PROMPT_OVERHEAD_TOKENS)
    minutes = seconds_per_answer * total_calls / 60 if seconds_per_answer is not None else None
    return CostEstimate(
        questions=questions,
        replicates=replicates,
        generator_calls=calls,
        probe_calls=probe_calls,
        judge_calls=judge_calls,
        prompt_tokens=prompt,
        completion_tokens=total_calls * g.max_new_tokens,
        judge_tokens=judge_calls * JUDGE_TOKENS_PER_CALL,
        seconds_per_answer=seconds_per_answer,
        minutes=minutes,
        basis=basis if seconds_per_answer is not None else "none",
    )
