"""The answer a user gets: text, the sources it cites, how well it is grounded, and timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Citation:
    """A numbered source shown with the answer: the exact passage (file, page, character span)."""

    number: int
    """The ``[n]`` used in the answer text."""
    source: str
    page: int | None
    start: int
    end: int
    chunk_id: int
    score: float
    """Retrieval score of the passage."""
    text: str
    heading_path: tuple[str, ...] = ()
    cited: bool = False
    """True when the answer text actually cites ``[number]``."""


@dataclass
class SentenceSupport:
    """How well one sentence of the answer is supported by the sources."""

    text: str
    start: int
    end: int
    """Character span of the sentence in :attr:`Answer.text`."""
    score: float
    """Probability-like support score in [0, 1]; higher is better supported."""
    citations: list[int] = field(default_factory=list)
    """The source numbers the sentence cites."""
    evidence: list[int] = field(default_factory=list)
    """The source numbers whose passages support it best."""
    evidence_text: str = ""
    """The passage span the guard compared the sentence with."""
    flagged: bool = False
    reason: str = ""
    """Why it is flagged: ``unsupported``, ``cited source does not support it``, ..."""


@dataclass
class Grounding:
    """The guard's verdict on a whole answer."""

    score: float
    """Overall support in [0, 1] (the weakest sentences weigh most)."""
    sentences: list[SentenceSupport] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def flagged(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if s.flagged]


@dataclass
class Answer:
    """The result of :meth:`rag_app.RAG.ask`."""

    question: str
    text: str
    citations: list[Citation]
    grounding: Grounding | None
    abstained: bool = False
    """True when the documents do not contain the answer; ``text`` then says so."""
    abstain_reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``retrieval``, ``generation``, ``first_token``, ``guard``, ``total``."""
    model: str = ""
    adapter: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    """``prompt_tokens`` and ``completion_tokens``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``rag-app ask --json`` prints this."""
        data = asdict(self)
        for citation in data["citations"]:
            citation["heading_path"] = list(citation["heading_path"])
        return data
