"""Plain data types that flow through the pipeline: loaded documents, chunks and search hits.

They hold no behaviour beyond small conveniences, so every package can share them
without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SECTION_SEPARATOR = "\n\n"
"""What stands between two sections in a document's extracted text (offsets count it)."""


@dataclass(frozen=True, slots=True)
class Section:
    """A structural piece of a document: a heading, a paragraph, a code block, a table, a page."""

    text: str
    page: int | None = None
    """1-based page number, where the format has pages (PDF, slides)."""
    heading_path: tuple[str, ...] = ()
    """The headings this section sits under, outermost first."""
    kind: str = "text"
    """One of ``text``, ``heading``, ``code``, ``table``."""


@dataclass(slots=True)
class LoadedDocument:
    """What a loader returns: the document's sections in reading order, plus metadata."""

    source: str
    """Path of the file the text came from."""
    format: str
    """Short format name, such as ``pdf`` or ``html``."""
    sections: list[Section]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The extracted text: sections joined by :data:`SECTION_SEPARATOR`.

        Chunk offsets (``start``/``end``) index into this string.
        """
        return SECTION_SEPARATOR.join(s.text for s in self.sections)

    def section_starts(self) -> list[int]:
        """Character offset of each section within :attr:`text`."""
        starts, pos = [], 0
        for section in self.sections:
            starts.append(pos)
            pos += len(section.text) + len(SECTION_SEPARATOR)
        return starts


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document small enough to embed, with where it came from."""

    text: str
    start: int
    """Character offset of the chunk's first character in the document's extracted text."""
    end: int
    """Offset one past the chunk's last character."""
    page: int | None
    heading_path: tuple[str, ...]
    ordinal: int
    """Position of the chunk within its document, from 0."""


@dataclass(slots=True)
class Hit:
    """One retrieved chunk with its score and provenance."""

    chunk_id: int
    text: str
    source: str
    page: int | None
    start: int
    end: int
    score: float
    heading_path: tuple[str, ...] = ()
    doc_id: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    """Per-retriever scores or ranks (``dense``, ``bm25``) before fusion."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "chunk_id": self.chunk_id,
            "text": self.text,
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "score": self.score,
            "heading_path": list(self.heading_path),
            "doc_id": self.doc_id,
            "scores": self.scores,
        }
