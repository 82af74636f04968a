"""A small corpus, questions about it, and an honest extractive generator, shared by the eval tests."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eval.types import EvalSample
from rag_app.documents import LoadedDocument, Section
from rag_app.generation.base import Completion, Message
from rag_app.prompting import NOT_FOUND
from rag_app.rag import RAG

DOCS = {
    "/docs/engineer.md": "John Miller is a German engineer who designed the Northbridge tunnel. "
    "He completed the tunnel in 1998 after six years of work. His team used a new concrete mix.",
    "/docs/doctor.md": "Priya Sharma is an Indian doctor who founded the Lakeside clinic. "
    "She opened the clinic in 2005. Her clinic treats children for free.",
    "/docs/tides.md": "The gravity of the moon pulls the oceans and causes the tides. "
    "Spring tides happen at full moon and at new moon.",
    "/docs/volcano.md": "Lava from a volcano cools into basalt. Magma chambers feed volcanic eruptions.",
}
SAMPLES = [
    EvalSample("q1", "Who designed the Northbridge tunnel?", answers=["John Miller"]),
    EvalSample("q2", "When did Priya Sharma open the Lakeside clinic?", answers=["2005"]),
    EvalSample("q3", "What causes the tides?", answers=["the gravity of the moon"]),
    EvalSample("q4", "What does lava cool into?", answers=["basalt"]),
]
_SOURCE_1 = re.compile(r"\[1\] (.*?)(?:\n\n\[\d+\] |\n\nQuestion:)", re.S)


def source_1(prompt: str) -> str | None:
    """The text of source [1] in a prompt (``[1] heading\\ntext``: the heading line dropped)."""
    found = _SOURCE_1.search(prompt)
    return found.group(1).strip().split("\n")[-1] if found else None


class ExtractiveGenerator:
    """Honest test double: the sentence of source [1] sharing most words with the question, cited [1]."""

    model_id: str = "extractive"
    adapter_id: str | None = None

    def __init__(self) -> None:
        self.calls = 0

    def _text(self, messages: Sequence[Message]) -> str:
        user = messages[-1]["content"]
        question = user.rsplit("Question:", 1)[-1]
        first = source_1(user)
        if first is None:
            return NOT_FOUND
        sentences = re.split(r"(?<=[.!?])\s+", first)
        words = set(re.findall(r"\w+", question.lower()))
        best = max(sentences, key=lambda s: len(words & set(re.findall(r"\w+", s.lower()))))
        return best.rstrip(".") + " [1]."

    def generate(self, messages: Sequence[Message], **_: object) -> Completion:
        self.calls += 1
        return Completion(text=self._text(messages), model=self.model_id)

    def stream(self, messages: Sequence[Message], **_: object) -> Iterator[str]:
        yield self.generate(messages).text

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def build_index(folder: Path, settings: Any, embedder: Any) -> Path:
    """An index of :data:`DOCS` (one markdown document each) in ``folder``."""
    docs = [LoadedDocument(src, "markdown", [Section(text)]) for src, text in DOCS.items()]
    RAG(folder, settings, embedder=embedder).add_documents(docs)
    return folder
