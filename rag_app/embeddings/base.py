"""The embedder contract shared by every backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import tokenizers


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors.

    Construction is cheap; the tokenizer loads on first use of :attr:`tokenizer` and the
    weights on the first ``embed_*`` call, so re-ingesting unchanged files loads no model.
    """

    model_id: str
    """Stable identifier of the model and its numerics, recorded in the index manifest."""
    dimension: int
    max_tokens: int
    """Longest input in the model's own tokens, special tokens included; longer input is truncated."""

    @property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """The model's own tokenizer (the ``tokenizers`` object), used to size chunks."""
        ...

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed passages: returns an array of shape (len(texts), dimension), float32, unit norm.

        ``progress`` is called with the number of texts finished after each batch.
        """
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: shape (dimension,), float32, unit norm."""
        ...


def embedder_model_name(embedder: Embedder) -> str:
    """The model name an index records (``model_id`` without its numerics suffix)."""
    return str(getattr(embedder, "model_name", embedder.model_id.split("@")[0]))
