"""Structure-aware chunking bounded in the embedder's own tokens.

Sections (headings, paragraphs, code blocks, tables, pages) are packed greedily into
chunks of at most ``chunk_tokens`` tokens. A heading or a new page starts a new chunk, so
a chunk's page and heading path are exact. A section longer than the budget is cut into
overlapping windows at sentence ends (line ends for code). Every chunk's text is exactly
``document.text[start:end]``, so a citation can highlight the span in the source text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag_app.documents import Chunk, LoadedDocument, Section

if TYPE_CHECKING:
    import tokenizers

SENTENCE_ENDS = frozenset(".!?;:")


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    tokens: int
    section: Section


class Chunker:
    """Cuts a :class:`LoadedDocument` into :class:`Chunk` objects.

    ``chunk_tokens`` counts the model's special tokens too (``special_tokens`` of them are
    added by the embedder), so a chunk never gets truncated at embedding time.
    """

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        chunk_tokens: int = 256,
        overlap_tokens: int = 32,
        special_tokens: int = 2,
    ) -> None:
        import tokenizers as tk

        if overlap_tokens * 2 >= chunk_tokens:
            raise ValueError("overlap_tokens must be less than half of chunk_tokens")
        # A private copy: the embedder's tokenizer may have truncation and padding enabled.
        self.tokenizer = tk.Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.budget = chunk_tokens - special_tokens
        self.overlap = overlap_tokens

    def chunk(self, document: LoadedDocument) -> list[Chunk]:
        """The document's chunks, in reading order."""
        sections = [s for s in document.sections if s.text.strip()]
        if len(sections) != len(document.sections):
            document = LoadedDocument(document.source, document.format, sections, document.metadata)
        if not sections:
            return []
        text = document.text
        encodings = self.tokenizer.encode_batch([s.text for s in sections], add_special_tokens=False)
        pieces: list[_Piece] = []
        for section, start, enc in zip(sections, document.section_starts(), encodings, strict=True):
            if len(enc.ids) <= self.budget:
                pieces.append(_Piece(start, start + len(section.text), len(enc.ids), section))
            else:
                pieces.extend(self._split(section, start, enc.offsets, enc.tokens))
        return [
            Chunk(
                text=text[group[0].start : group[-1].end],
                start=group[0].start,
                end=group[-1].end,
                page=group[0].section.page,
                heading_path=_heading_path(group),
                ordinal=i,
            )
            for i, group in enumerate(self._pack(pieces))
        ]

    def _pack(self, pieces: list[_Piece]) -> list[list[_Piece]]:
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        used = 0
        for piece in pieces:
            only_headings = all(p.section.kind == "heading" for p in current)
            starts_new = (
                bool(current)
                and not (only_headings and used + piece.tokens <= self.budget)
                and (
                    piece.section.kind == "heading"
                    or piece.section.page != current[0].section.page
                    or used + piece.tokens > self.budget
                )
            )
            if starts_new:
                groups.append(current)
                carry = self._carry_over(current) if used + piece.tokens > self.budget else []
                if (
                    sum(p.tokens for p in carry) + piece.tokens > self.budget
                    or piece.section.kind == "heading"
                ):
                    carry = []
                current, used = list(carry), sum(p.tokens for p in carry)
            current.append(piece)
            used += piece.tokens
        if current:
            groups.append(current)
        return groups

    def _carry_over(self, group: list[_Piece]) -> list[_Piece]:
        """Trailing whole pieces of ``group`` worth at most ``overlap`` tokens (never only a heading)."""
        carry: list[_Piece] = []
        total = 0
        for piece in reversed(group):
            if total + piece.tokens > self.overlap or piece.section.kind == "heading":
                break
            carry.insert(0, piece)
            total += piece.tokens
        return carry if len(carry) < len(group) else []

    def _split(
        self, section: Section, base: int, offsets: list[tuple[int, int]], tokens: list[str]
    ) -> list[_Piece]:
        """Overlapping windows over one long section, cut at sentence (or line) ends."""
        n = len(offsets)
        pieces: list[_Piece] = []
        i = 0
        text = section.text
        while i < n:
            end = min(i + self.budget, n)
            if end < n:
                end = self._cut(text, offsets, tokens, i, end, code=section.kind in ("code", "table"))
            pieces.append(_Piece(base + offsets[i][0], base + offsets[end - 1][1], end - i, section))
            if end >= n:
                break
            i = self._overlap_start(text, offsets, tokens, max(end - self.overlap, i + 1), end)
        return pieces

    @staticmethod
    def _overlap_start(
        text: str, offsets: list[tuple[int, int]], tokens: list[str], lo: int, end: int
    ) -> int:
        """Where the next window starts: a sentence start within the overlap, else a word start."""
        for j in range(lo, end):
            if tokens[j - 1] in SENTENCE_ENDS or text[offsets[j - 1][1] : offsets[j][0]].count("\n"):
                return j
        j = lo
        while j < end and offsets[j][0] == offsets[j - 1][1]:
            j += 1  # do not start inside a word
        return j if j < end else lo

    def _cut(
        self, text: str, offsets: list[tuple[int, int]], tokens: list[str], i: int, end: int, *, code: bool
    ) -> int:
        """The best window end in (i + budget/2, end]: after a sentence end, else a line end."""
        floor = i + self.budget // 2
        for j in range(end - 1, floor, -1):
            char_end = offsets[j][1]
            if code:
                if char_end >= len(text) or text[char_end] == "\n":
                    return j + 1
            elif tokens[j] in SENTENCE_ENDS or (char_end < len(text) and text[char_end] == "\n"):
                return j + 1
        return end


def _heading_path(group: list[_Piece]) -> tuple[str, ...]:
    for piece in group:
        if piece.section.kind != "heading":
            return piece.section.heading_path
    first = group[0].section
    return first.heading_path
