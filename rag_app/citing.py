"""Citations of an answer: the numbered sources, the ``[n]`` marks and the exact source spans.

After the guard has checked an answer, each supported sentence that cites nothing gets the mark of
its best evidence (:func:`cite_every_sentence`), marks naming a source that was not shown are
dropped, and every sentence gets the document offsets of the span that supports it
(:func:`snap_spans`): what the app shows as file, page and span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_app.answer import Answer, Citation, Grounding, SentenceSupport
from rag_app.answer_text import find_span
from rag_app.documents import Hit
from rag_app.prompting import cited_numbers, strip_citations


def citations_of(hits: Sequence[Hit]) -> list[Citation]:
    """The retrieved passages as numbered citations ([1] is the first)."""
    return [
        Citation(
            number=n,
            source=hit.source,
            page=hit.page,
            start=hit.start,
            end=hit.end,
            chunk_id=hit.chunk_id,
            score=hit.score,
            text=hit.text,
            heading_path=hit.heading_path,
        )
        for n, hit in enumerate(hits, start=1)
    ]


def source_ids(hits: Sequence[Hit]) -> tuple[str, ...]:
    """Strings that identify sources and must not appear in an answer (file names, paths)."""
    ids: list[str] = []
    for hit in hits:
        name = hit.source.rsplit("/", 1)[-1]
        ids.extend([hit.source, name])
    return tuple(sorted(set(ids), key=len, reverse=True))


def drop_invalid_citations(text: str, n_sources: int) -> str:
    """Citation marks naming a source that was not shown are removed (the guard cites anew)."""

    def keep(match: re.Match[str]) -> str:
        return match.group() if 0 < int(match.group(1)) <= n_sources else ""

    return re.sub(r"\s*\[(\d{1,3})\]", keep, text).strip()


def mark_cited(answer: Answer) -> None:
    """Set ``cited`` on the citations whose ``[n]`` the answer text holds."""
    used = set(cited_numbers(answer.text))
    for citation in answer.citations:
        citation.cited = citation.number in used


def cite_every_sentence(text: str, grounding: Grounding, n_sources: int) -> tuple[str, Grounding]:
    """Give each supported sentence that cites nothing the ``[n]`` of its best evidence.

    Flagged sentences stay uncited: pointing them at a passage would claim support the
    guard did not find. Sentence spans are moved to match the new text.
    """
    pieces: list[str] = []
    cursor = shift = 0
    for sentence in grounding.sentences:
        pieces.append(text[cursor : sentence.start])
        body = text[sentence.start : sentence.end]
        cursor = sentence.end
        if not sentence.citations and not sentence.flagged and sentence.evidence:
            number = sentence.evidence[0]
            if number <= n_sources:
                body = _insert_mark(body, f" [{number}]")
                sentence.citations = [number]
        start = sentence.start + shift
        shift += len(body) - (sentence.end - sentence.start)
        sentence.start, sentence.end, sentence.text = start, start + len(body), body
        pieces.append(body)
    pieces.append(text[cursor:])
    return "".join(pieces), grounding


def _insert_mark(sentence: str, mark: str) -> str:
    """``"Paris is the capital."`` -> ``"Paris is the capital [1]."``"""
    body = sentence.rstrip()
    tail = sentence[len(body) :]
    if body and body[-1] in ".!?":
        return body[:-1] + mark + body[-1] + tail
    return body + mark + tail


def snap_spans(grounding: Grounding, sources: Sequence[Hit]) -> None:
    """Give each sentence the exact span of the source that supports it (document offsets).

    A sentence that copies a source span gets that span (``exact``); otherwise the evidence
    sentence the guard compared it with, located in its passage.
    """
    for sentence in grounding.sentences:
        claim = strip_citations(sentence.text)
        numbers = list(dict.fromkeys([*sentence.citations, *sentence.evidence]))
        numbers += [n for n in range(1, len(sources) + 1) if n not in numbers]
        for n in numbers:
            hit = sources[n - 1] if 0 < n <= len(sources) else None
            if hit is None:
                continue
            found = find_span(claim, hit.text)
            if found is not None:
                _set_span(sentence, n, hit, found, exact=True)
                break
        else:
            _snap_evidence(sentence, sources)


def _snap_evidence(sentence: SentenceSupport, sources: Sequence[Hit]) -> None:
    if not sentence.evidence or not sentence.evidence_text:
        return
    n = sentence.evidence[0]
    if not 0 < n <= len(sources):
        return
    hit = sources[n - 1]
    found = find_span(sentence.evidence_text, hit.text)
    if found is not None:
        _set_span(sentence, n, hit, found, exact=False)


def _set_span(sentence: SentenceSupport, n: int, hit: Hit, span: tuple[int, int], *, exact: bool) -> None:
    sentence.source = n
    sentence.source_start = hit.start + span[0]
    sentence.source_end = hit.start + span[1]
    sentence.source_text = hit.text[span[0] : span[1]]
    sentence.exact = exact
