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
    threshold: float = 0.5
    """The support this sentence needed (short factoid answers have their own calibrated threshold)."""
    source: int | None = None
    """The ``[n]`` of the source holding the supporting span (``None``: no span found)."""
    source_start: int = 0
    source_end: int = 0
    """The supporting span's character offsets in that source's document (as ``Citation.start``)."""
    source_text: str = ""
    """The supporting span itself: the answer's own words when it copies them (``exact``), else
    the source sentence that supports it best."""
    exact: bool = False
    """True when the sentence is the source span verbatim (case and spacing aside)."""


@dataclass
class Grounding:
    """The guard's verdict on a whole answer."""

    score: float
    """Overall support in [0, 1]: the verdict that the answer is right, never above the support of
    the weakest shown sentence."""
    sentences: list[SentenceSupport] = field(default_factory=list)
    threshold: float = 0.5
    """Sentences whose lexical support is below this are flagged."""
    answer_threshold: float = 0.5
    """An answer whose ``score`` is below this is not supported (withheld by default)."""
    lexical: float | None = None
    """The lexical guard's support of the whole answer."""
    verifier: float | None = None
    """The generator's own P(Yes) that the answer is right (``None``: not asked)."""
    features: dict[str, float | None] = field(default_factory=dict)
    """What the verdict was computed from (``rag_app.guard.verdict``)."""

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
    """Why, in plain words for the user."""
    abstain_code: str = ""
    """Why, for programs: ``no_close_passage``, ``model_found_none``, ``empty_answer``,
    ``unsupported``."""
    details: str = ""
    """The technical detail behind the decision (scores and the settings that decided it)."""
    draft: str | None = None
    """The generator's own answer, when ``text`` is not it (withheld, or cut to its short form)."""
    supported: bool = True
    """False when the guard found the answer unsupported (withheld, or shown marked)."""
    withdrawn: bool = False
    """A stream only: text already sent was withdrawn at the end (the stream said so in-band)."""
    language: str = "en"
    """The question's language (ISO 639-1); the answer and the abstention use it."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``retrieval``, ``generation``, ``first_token``, ``guard``, ``total``."""
    model: str = ""
    adapter: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    """``prompt_tokens`` and ``completion_tokens``."""

    @property
    def content(self) -> str:
        """What a client shows: the text, with a warning when it is shown unsupported (``mark``)."""
        if self.supported or self.abstained:
            return self.text
        from rag_app.not_found import reason

        return f"{self.text}\n\n({reason('unverified', self.language)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``rag-app ask --json`` prints this."""
        data = asdict(self)
        for citation in data["citations"]:
            citation["heading_path"] = list(citation["heading_path"])
        return data
