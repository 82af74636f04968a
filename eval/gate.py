"""The loop's gate: promote a candidate only on a significant gain and no significant regression.

Per question the frozen-split runs give the primary metric, wrong answers shown, abstention
correct and latency (:func:`gate_results`); :func:`decide` compares base and candidate with
``eval compare``'s paired test (:func:`eval.stats.compare_runs`, Holm-adjusted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.types import SampleResult

GATE_METRICS = {
    "wrong_shown": "higher is worse",
    "abstention_correct": "lower is worse",
    "latency_s": "higher is worse",
}
"""The guard rails: a candidate that is significantly worse on any of them is refused."""


@dataclass
class Decision:
    """Whether the candidate is promoted, why, and the paired comparison behind it."""

    promote: bool
    reason: str
    evidence: list[dict[str, Any]] = field(default_factory=list)


def gate_results(
    results: Sequence[SampleResult], samples: dict[str, Any], primary: str
) -> list[SampleResult]:
    """Per question: the primary metric, wrong answers shown (answered with F1 = 0 where a reference
    exists), abstention correct (where the question has no reference answer), and latency."""
    out = []
    for r in results:
        sample = samples.get(r.sample_id)
        has_answer = bool(sample is not None and sample.answers)
        metrics: dict[str, float | None] = {"latency_s": float(r.timings.get("total", 0.0))}
        value = r.metrics.get(f"answer.{primary}", r.metrics.get(primary))
        if value is not None:
            metrics[primary] = float(value)
        if has_answer:
            f1 = r.metrics.get("answer.f1")
            metrics["wrong_shown"] = float(not r.abstained and f1 is not None and float(f1) == 0.0)
        else:
            metrics["abstention_correct"] = float(r.abstained)
        out.append(SampleResult(r.sample_id, r.replicate, r.question, r.answer, r.abstained, metrics=metrics))
    return out


def decide(
    base: Sequence[SampleResult], candidate: Sequence[SampleResult], primary: str, alpha: float, seed: int = 0
) -> Decision:
    """Promote when the candidate's primary metric is significantly higher (paired bootstrap and
    sign-flip test, Holm-adjusted) and none of :data:`GATE_METRICS` is significantly worse."""
    from eval.stats import compare_runs

    rows = compare_runs(base, candidate, resamples=4000, seed=seed, alpha=alpha)
    by_metric = {r["metric"]: r for r in rows}
    main = by_metric.get(primary)
    if main is None:
        return Decision(False, f"no paired {primary} values to compare: keeping the current adapter", rows)
    worse = [
        name
        for name, direction in GATE_METRICS.items()
        if name in by_metric
        and by_metric[name]["significant"]
        and (by_metric[name]["diff"] > 0) == (direction == "higher is worse")
    ]
    summary = (
        f"{primary} {main['a']:.3f} -> {main['b']:.3f} (diff {main['diff']:+.3f}, p {main['p_adjusted']:.3g})"
    )
    if worse:
        return Decision(
            False, f"significantly worse on {', '.join(worse)}; {summary}: kept the current", rows
        )
    if main["significant"] and main["diff"] < 0:
        return Decision(False, f"significantly worse on {primary}: {summary}; kept the current adapter", rows)
    if not main["significant"]:
        return Decision(False, f"no significant gain: {summary}; kept the current adapter", rows)
    return Decision(True, f"significant gain: {summary}", rows)
