"""The ragas metric objects: the offline ones (our guard and embedder adapted to ragas) and the
judge's."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eval.ragas_metrics.names import ANSWER_RELEVANCY_STRICTNESS, PREFIX
from eval.ragas_metrics.outcome import RagasOutcome

if TYPE_CHECKING:
    from eval.ragas_metrics.judge import Judge
    from rag_app.embeddings.base import Embedder
    from rag_app.guard.guard import Guard


def guard_metric(guard: Guard, name: str = "faithfulness") -> Any:
    """Our guard as a ragas ``SingleTurnMetric`` named ``name``."""
    return _guard_metric_class()(name=name, guard=guard)


@functools.cache
def _guard_metric_class() -> type:
    from ragas.metrics.base import MetricOutputType, MetricType, SingleTurnMetric

    @dataclass
    class GuardFaithfulness(SingleTurnMetric):
        """Faithfulness from the hallucination guard: its support score of the answer, offline."""

        name: str = "faithfulness"
        _required_columns: dict[MetricType, set[str]] = field(
            default_factory=lambda: {MetricType.SINGLE_TURN: {"user_input", "response", "retrieved_contexts"}}
        )
        output_type: MetricOutputType = MetricOutputType.CONTINUOUS
        guard: Any = None

        def init(self, run_config: Any) -> None:
            if self.guard is None:
                raise ValueError(f"metric {self.name!r} needs a guard")

        async def _single_turn_ascore(self, sample: Any, callbacks: Any) -> float:
            grounding = self.guard.check(sample.response or "", list(sample.retrieved_contexts or []))
            return float(grounding.score)

    return GuardFaithfulness


def ragas_embeddings(embedder: Embedder) -> Any:
    """The project's embedder as ragas ``BaseRagasEmbeddings`` (sync and async)."""
    return _embeddings_class()(embedder)


@functools.cache
def _embeddings_class() -> type:
    from ragas.embeddings.base import BaseRagasEmbeddings
    from ragas.run_config import RunConfig

    class EmbedderAdapter(BaseRagasEmbeddings):
        """``Embedder`` -> ragas embeddings; the async methods run the (CPU) embedder inline."""

        def __init__(self, embedder: Embedder) -> None:
            super().__init__()
            self.embedder = embedder
            self.run_config = RunConfig()

        def embed_query(self, text: str) -> list[float]:
            return [float(x) for x in self.embedder.embed_query(text)]

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if not texts:
                return []
            return [[float(x) for x in row] for row in self.embedder.embed_documents(list(texts))]

        async def aembed_query(self, text: str) -> list[float]:
            return self.embed_query(text)

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embed_documents(texts)

    return EmbedderAdapter


def offline_metrics(embedder: Embedder, guard: Guard | None, outcome: RagasOutcome) -> dict[str, Any]:
    """The metrics that need no judge, by short name (faithfulness only with a guard)."""
    with warnings.catch_warnings():  # "import from ragas.metrics.collections" (the v1 API)
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import (
            BleuScore,
            NonLLMContextPrecisionWithReference,
            NonLLMContextRecall,
            NonLLMStringSimilarity,
            RougeScore,
            SemanticSimilarity,
        )

    metrics: dict[str, Any] = {}
    if guard is not None:
        metrics["faithfulness"] = guard_metric(guard)
    else:
        outcome.skipped[PREFIX + "faithfulness"] = "no guard (guard.enabled is off)"
    metrics["bleu"] = BleuScore(name="bleu", kwargs={"use_effective_order": True})
    metrics["rouge_l"] = RougeScore(name="rouge_l", rouge_type="rougeL")
    metrics["string_similarity"] = NonLLMStringSimilarity(name="string_similarity")
    metrics["semantic_similarity"] = SemanticSimilarity(
        name="semantic_similarity", embeddings=ragas_embeddings(embedder)
    )
    metrics["context_precision_nonllm"] = NonLLMContextPrecisionWithReference(name="context_precision_nonllm")
    metrics["context_recall_nonllm"] = NonLLMContextRecall(name="context_recall_nonllm")
    return metrics


def llm_metrics(judge: Judge, embedder: Embedder) -> dict[str, Any]:
    """The metrics that call ``judge``, by short name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import (
            Faithfulness,
            LLMContextPrecisionWithReference,
            LLMContextRecall,
            ResponseRelevancy,
        )

    return {
        "faithfulness_llm": Faithfulness(name="faithfulness_llm", llm=judge),
        "answer_relevancy": ResponseRelevancy(
            name="answer_relevancy",
            llm=judge,
            embeddings=ragas_embeddings(embedder),
            strictness=ANSWER_RELEVANCY_STRICTNESS,
        ),
        "context_precision": LLMContextPrecisionWithReference(name="context_precision", llm=judge),
        "context_recall": LLMContextRecall(name="context_recall", llm=judge),
    }


def required_columns(metric: Any) -> frozenset[str]:
    """The ``SingleTurnSample`` fields ``metric`` needs."""
    from ragas.metrics.base import MetricType

    return frozenset(metric.required_columns.get(MetricType.SINGLE_TURN.name, set()))
