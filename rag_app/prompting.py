"""Prompts with numbered sources: what the generator sees.

The sources are numbered best first and cut to a token budget. The model is told to answer
briefly in the sources' words, cite ``[n]``, and say one fixed sentence when they do not contain
the answer; the verifier's yes/no question follows the answer in the same conversation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag_app.documents import Hit
from rag_app.generation.base import Message
from rag_app.language import DEFAULT as ENGLISH
from rag_app.language import language_name
from rag_app.not_found import NOT_FOUND, is_not_found, not_found_sentence

__all__ = [
    "NOT_FOUND",
    "SYSTEM_PROMPT",
    "VERIFY_QUESTION",
    "Prompt",
    "build_prompt",
    "cited_numbers",
    "is_not_found",
    "source_heading",
    "strip_citations",
    "verify_messages",
]

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources. Reply with the answer alone, in the "
    "words of the source: a name, a number, a date or a short phrase (one short sentence when the "
    "question asks how or why), followed by the number of its source, like: Denver Broncos [2]. "
    f'If the sources do not contain the answer, reply exactly: "{NOT_FOUND}"'
)
"""The answer prompt: short answers in the sources' words, one citation, one abstention sentence.

Sources are shown with their number and heading only: no file names or ids, which small models
copy into answers."""
VERIFY_QUESTION = "Is that answer correct and stated in the cited source? Reply Yes or No."
"""Asked after the answer, in the same conversation: the verifier reads P(Yes) from the next token."""

_CITATION = re.compile(r"\[(\d{1,3})\]")
_CITATION_MARK = re.compile(r"\s*\[\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]")
"""A citation mark with its leading space: `` [2]``, `` [1, 3]``, `` [2-4]``."""


@dataclass(frozen=True)
class Prompt:
    """The messages for the generator and the hits behind each source number (1-based)."""

    messages: list[Message]
    sources: list[Hit]


def source_heading(hit: Hit) -> str:
    """What the prompt shows above a source's text: its heading path (underscores read as spaces)."""
    return " > ".join(" ".join(h.replace("_", " ").split()) for h in hit.heading_path if h.strip())


def build_prompt(
    question: str,
    hits: Sequence[Hit],
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    history: Sequence[Message] = (),
    language: str = ENGLISH,
) -> Prompt:
    """Messages with as many numbered sources as fit in ``budget_tokens``, best first.

    Sources stay in retrieval order (the best is ``[1]``): a small model reads the first source
    most closely. ``language`` (an ISO code) asks for the answer, and the abstention, in it.
    """
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
    blocks = []
    for n, hit in enumerate(kept, 1):
        heading = source_heading(hit)
        blocks.append(f"[{n}] " + (f"{heading}\n" if heading else "") + " ".join(hit.text.split()))
    user = "Sources:\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    system = SYSTEM_PROMPT
    if language != ENGLISH:
        name = language_name(language)
        system = system.replace(NOT_FOUND, not_found_sentence(language)) + f" Answer in {name}."
        user += f"\nAnswer in {name}."
    messages: list[Message] = [{"role": "system", "content": system}]
    messages.extend(history)
    messages.append({"role": "user", "content": user})
    return Prompt(messages, kept)


def verify_messages(prompt: Prompt, answer: str) -> list[Message]:
    """The conversation that asks the generator whether its own ``answer`` is right (yes/no)."""
    return [
        *prompt.messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": VERIFY_QUESTION},
    ]


def strip_citations(text: str) -> str:
    """``text`` without its citation marks (to compare an answer with reference answers)."""
    return _CITATION_MARK.sub("", text).strip()


def cited_numbers(text: str) -> list[int]:
    """The ``[n]`` numbers in ``text``, in order of first appearance."""
    return list(dict.fromkeys(int(n) for n in _CITATION.findall(text)))


def _shortened(hit: Hit, budget: int, count_tokens: Callable[[str], int]) -> Hit:
    """The hit cut to a prefix that fits ``budget`` tokens (its span shrinks with it)."""
    n = len(hit.text)
    while n > 1 and count_tokens(hit.text[:n]) > budget:
        n = int(n * 0.8)
    return replace(hit, text=hit.text[:n], end=hit.start + n)
