"""The names of the RAGAS metrics a run writes (``ragas.<name>``) and how many calls the judge costs."""

from __future__ import annotations

PREFIX = "ragas."
OFFLINE_METRICS = (
    "faithfulness",
    "bleu",
    "rouge_l",
    "string_similarity",
    "semantic_similarity",
    "context_precision_nonllm",
    "context_recall_nonllm",
)
"""Short names of the metrics that need no judge."""
LLM_METRICS = ("faithfulness_llm", "answer_relevancy", "context_precision", "context_recall")
"""Short names of the metrics that call the judge."""
RAGAS_METRIC_NAMES = tuple(PREFIX + name for name in (*OFFLINE_METRICS, *LLM_METRICS))
"""Every metric name this module writes into ``SampleResult.metrics``."""
RAGAS_OFFLINE_METRIC_NAMES = tuple(PREFIX + name for name in OFFLINE_METRICS)
RAGAS_LLM_METRIC_NAMES = tuple(PREFIX + name for name in LLM_METRICS)

ANSWER_RELEVANCY_STRICTNESS = 3
"""Questions RAGAS generates per answer for answer relevancy (one judge call each)."""


def estimate_judge_calls(
    n_samples: int,
    llm_metrics_enabled: bool,
    *,
    contexts_per_sample: int = 5,
    strictness: int = ANSWER_RELEVANCY_STRICTNESS,
) -> int:
    """Judge requests that scoring ``n_samples`` answers takes, following ragas 0.4's prompts.

    Per answer: faithfulness 2 (statements, then NLI verdicts), answer relevancy ``strictness``
    (one generated question each), context precision one per retrieved context, context recall 1.
    An upper bound for answers with a reference (precision and recall need one); a reply that does
    not parse costs up to 3 more calls (RAGAS's format-fixing prompt), not counted here.
    """
    if not llm_metrics_enabled or n_samples <= 0:
        return 0
    return n_samples * (2 + strictness + max(contexts_per_sample, 0) + 1)
