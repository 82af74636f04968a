"""The records an evaluation run reads and writes: samples in, per-answer results out.

Every other module of :mod:`eval` speaks these types; they hold plain data (JSON-ready through
:meth:`to_dict` / :meth:`from_dict`) and import nothing heavy.

A metric value is a float, or ``None`` when the metric *failed* for that answer (a judge that
returned unparseable JSON, a NaN, an exception). A failed value is counted and shown as failed;
it is never averaged in and never shown as 0 (:class:`MetricSummary`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MetricValue = float | None
"""A score, or None when the metric failed on this answer."""


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (newer keys are ignored)."""
    return {k: data[k] for k in cls.__dataclass_fields__ if k in data}  # type: ignore[attr-defined]


@dataclass
class EvalSample:
    """One question of a dataset, with whatever references it has."""

    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    """Reference answers (any of them counts as right); empty when the dataset has none."""
    contexts: list[str] = field(default_factory=list)
    """Reference passages that answer the question (texts)."""
    relevant: dict[str, int] = field(default_factory=dict)
    """Document ids that answer it -> graded relevance (BEIR qrels); matched against a hit's
    source (whole path or file name) or chunk id by :func:`eval.retrieval_metrics.hit_key`."""
    qtype: str = ""
    """Question type for the report's aggregates (``what``, ``who``, ``claim``, ...)."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSample:
        return cls(**_known(cls, data))


@dataclass
class Passage:
    """A retrieved passage as the generator saw it (numbered from 1 in the prompt)."""

    number: int
    source: str
    page: int | None
    start: int
    end: int
    chunk_id: int
    score: float
    text: str
    cited: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Passage:
        return cls(**_known(cls, data))


@dataclass
class FlaggedSentence:
    """A sentence of an answer with the guard's verdict and the evidence it compared it to."""

    text: str
    score: float
    flagged: bool
    reason: str = ""
    citations: list[int] = field(default_factory=list)
    evidence: list[int] = field(default_factory=list)
    evidence_text: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlaggedSentence:
        return cls(**_known(cls, data))


@dataclass
class SampleResult:
    """What the app answered for one sample in one replicate, and every metric of it."""

    sample_id: str
    replicate: int
    question: str
    answer: str
    abstained: bool = False
    passages: list[Passage] = field(default_factory=list)
    grounding: float | None = None
    """The guard's overall support score (None when the guard is off or the app abstained early)."""
    sentences: list[FlaggedSentence] = field(default_factory=list)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """metric name -> why it failed (for the metrics whose value is None)."""
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    qtype: str = ""
    error: str | None = None
    """Set when the app itself failed on this question (the answer is then empty)."""

    @property
    def flagged(self) -> list[FlaggedSentence]:
        return [s for s in self.sentences if s.flagged]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleResult:
        values = _known(cls, data)
        values["passages"] = [Passage.from_dict(p) for p in data.get("passages", [])]
        values["sentences"] = [FlaggedSentence.from_dict(s) for s in data.get("sentences", [])]
        return cls(**values)


@dataclass
class MetricSummary:
    """One metric over a run: the mean of the values that exist, how many failed, a 95% CI."""

    name: str
    mean: float | None
    n: int
    """Values averaged."""
    failed: int
    """Answers on which the metric failed (not averaged in)."""
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_value(value: Any) -> MetricValue:
    """A metric value as float, or None for a failure (None, NaN, infinity, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class RunRecord:
    """One stored evaluation run (:class:`eval.runs.RunStore`): what was run, on what, and its results."""

    id: str
    created_at: str
    dataset: str
    manifest: dict[str, Any]
    """Corpus hash, index manifest, model and adapter ids, settings, seeds, package versions,
    the cost estimate and the command line: everything needed to run it again."""
    summary: dict[str, MetricSummary]
    """Metric name -> its summary over all samples and replicates."""
    results: list[SampleResult] = field(default_factory=list)
    hallucination: dict[str, Any] = field(default_factory=dict)
    """:func:`eval.hallucination.hallucination_report` of the results."""
    probes: dict[str, Any] = field(default_factory=dict)
    """Probe name (``bias``, ``robustness``, ``injection``) -> its report (:mod:`eval.probes`)."""
    wall_seconds: float = 0.0
    status: str = "complete"
    """``complete``, or ``failed`` / ``interrupted`` for a run that stopped early (its rows are kept)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = {k: v.to_dict() for k, v in self.summary.items()}
        return data
