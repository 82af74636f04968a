"""Prompts with numbered sources: what the generator sees.

The sources are numbered in the order they are shown, the best ones placed first and last
(models attend least to the middle of a long context: "lost in the middle"), and cut to a
token budget. The model is told to answer only from them, cite ``[n]``, and say a fixed
sentence when they do not contain the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag_app.documents import Hit
from rag_app.generation.base import Message

NOT_FOUND = "I could not find the answer in the documents."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources. "
    "Write a short answer and cite the sources you used like [1]. "
    f'If the sources do not contain the answer, reply exactly: "{NOT_FOUND}"'
)

_CITATION = re.compile(r"\[(\d{1,3})\]")
_CITATION_MARK = re.compile(r"\s*\[\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]")
"""A citation mark with its leading space: `` [2]``, `` [1, 3]``, `` [2-4]``."""


@dataclass(frozen=True)
class Prompt:
    """The messages for the generator and the hits behind each source number (1-based)."""

    messages: list[Message]
    sources: list[Hit]


def reorder_for_context(hits: Sequence[Hit]) -> list[Hit]:
    """Best first and last, weakest in the middle: ranks 1,3,5,...,4,2."""
    front = list(hits[0::2])
    back = list(hits[1::2])
    return front + back[::-1]


def source_label(hit: Hit) -> str:
    name = hit.source.rsplit("/", 1)[-1]
    return f"{name}, page {hit.page}" if hit.page else name


def build_prompt(
    question: str,
    hits: Sequence[Hit],
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    history: Sequence[Message] = (),
) -> Prompt:
    """Messages with as many numbered sources as fit in ``budget_tokens`` (the best are kept)."""
    kept: list[Hit] = []
    used = 0
    for hit in hits:  # by relevance: the weakest are the ones dropped
        cost = count_tokens(hit.text) + 8
        if used + cost > budget_tokens:
            if not kept:  # always give the model something: the best passage, shortened
                kept.append(_shortened(hit, budget_tokens, count_tokens))
            break
        kept.append(hit)
        used += cost
    shown = reorder_for_context(kept)
    blocks = [f"[{n}] ({source_label(hit)})\n{' '.join(hit.text.split())}" for n, hit in enumerate(shown, 1)]
    user = "Sources:\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages.extend(history)
    messages.append({"role": "user", "content": user})
    return Prompt(messages, shown)


def strip_citations(text: str) -> str:
    """``text`` without its citation marks (to compare an answer with reference answers)."""
    return _CITATION_MARK.sub("", text).strip()


def cited_numbers(text: str) -> list[int]:
    """The ``[n]`` numbers in ``text``, in order of first appearance."""
    return list(dict.fromkeys(int(n) for n in _CITATION.findall(text)))


def is_not_found(text: str) -> bool:
    """True when the model said the documents do not contain the answer."""
    squashed = " ".join(text.lower().split())
    return squashed.startswith(NOT_FOUND.lower().rstrip(".")) or "could not find the answer" in squashed


def _shortened(hit: Hit, budget: int, count_tokens: Callable[[str], int]) -> Hit:
    """The hit cut to a prefix that fits ``budget`` tokens (its span shrinks with it)."""
    n = len(hit.text)
    while n > 1 and count_tokens(hit.text[:n]) > budget:
        n = int(n * 0.8)
    return replace(hit, text=hit.text[:n], end=hit.start + n)
