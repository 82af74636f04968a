"""The generator contract that every backend satisfies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict, runtime_checkable


class Message(TypedDict):
    """One chat message, as in the OpenAI chat API."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass
class Completion:
    """What a generator returns for one request."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    """``stop`` (end of answer or a stop string), ``length`` (max_new_tokens) or ``repetition``."""
    model: str = ""
    adapter: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``first_token``, ``total``; and ``tokens_per_s`` of decoding."""


@runtime_checkable
class Generator(Protocol):
    """Writes text for chat messages. Construction is cheap; weights load on first use."""

    model_id: str
    adapter_id: str | None

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """The whole answer at once. ``temperature`` 0 is greedy (deterministic)."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """The answer as text pieces, as they are decoded."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer (for the context budget); never downloads."""
        ...
