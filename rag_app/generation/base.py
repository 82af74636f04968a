"""The generator contract that every backend satisfies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


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
    token_logprobs: list[float] = field(default_factory=list)
    """Log-probability of each generated token, where the backend reports them (its confidence)."""
    state: Any = field(default=None, repr=False, compare=False)
    """Backend state a follow-up call may reuse (the transformers backend keeps the KV cache of
    prompt and answer here, so the verifier's yes/no question costs a few tokens, not a prefill)."""


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


@runtime_checkable
class Verifier(Protocol):
    """A generator that can judge an answer: P(Yes) for a yes/no question asked after it.

    ``stream`` of such a backend returns its :class:`Completion` when it is exhausted (the value of
    ``StopIteration``), so a streamed answer can be verified as cheaply as a generated one.
    """

    def verify(self, messages: Sequence[Message], *, completion: Completion | None = None) -> float:
        """P(Yes) / (P(Yes) + P(No)) for the first token after ``messages`` (which end with the
        question). ``completion`` is the answer being judged, whose state the backend may reuse."""
        ...
