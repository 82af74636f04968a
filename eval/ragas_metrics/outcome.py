"""What one RAGAS scoring did (:class:`RagasOutcome`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RagasOutcome:
    """What :func:`score_ragas` did: the metrics that ran, those skipped and why, failures, cost."""

    ran: list[str] = field(default_factory=list)
    """Metric names (``ragas.*``) computed on at least one answer."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric name -> why it ran on no answer (no judge, no reference answers, ...)."""
    skipped_samples: dict[str, dict[str, int]] = field(default_factory=dict)
    """Metric name -> reason -> answers it did not apply to (missing input, app error)."""
    scored: dict[str, int] = field(default_factory=dict)
    """Metric name -> answers that got a value."""
    failures: dict[str, int] = field(default_factory=dict)
    """Metric name -> answers on which it failed (value None, reason in ``result.errors``)."""
    llm_metrics: bool = False
    """Whether the judge's metrics ran."""
    judge_calls: int = 0
    """Chat completion requests sent to the judge (format-fix retries included)."""
    judge_error: str | None = None
    """Why the judge failed, when it was unreachable or failed on every answer."""
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    evaluations: list[Any] = field(default_factory=list, repr=False)
    """The ``ragas.EvaluationResult`` of each group of answers evaluated (not serialised)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("evaluations")
        return data
