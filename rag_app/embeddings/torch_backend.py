"""The reference embedder: sentence-transformers on torch (``embedding.backend = "torch"``).

Slower than the ONNX backend on CPU; used as the reference in tests and where exact torch
numerics matter. Needs the ``torch-embed`` extra (sentence-transformers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.embeddings.onnx_backend import length_batches, load_tokenizer
from rag_app.errors import RagAppError
from rag_app.models import embedder_info
from rag_app.offline import enforce_offline
from rag_app.settings import Settings

if TYPE_CHECKING:
    import tokenizers


class TorchEmbedder:
    """:class:`~rag_app.embeddings.base.Embedder` on sentence-transformers; weights load on first use."""

    def __init__(self, settings: Settings, *, device: str | None = None) -> None:
        self.settings = settings
        self.info = embedder_info(settings)
        self.model_name = self.info.name
        self.model_id = f"{self.info.name}@torch"
        self.dimension = self.info.dimension
        self.max_tokens = min(settings.embedding.max_tokens, self.info.max_seq_length)
        self.batch_size = settings.embedding.batch_size
        self.device = device
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._model: Any = None

    @property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """The model's tokenizer, without truncation or padding (for counting tokens)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.info.folder)
        return self._tokenizer

    def warm_up(self) -> None:
        """Load the sentence-transformers model."""
        self._ready()

    def _ready(self) -> Any:
        if self._model is None:
            enforce_offline(self.settings.allow_network)
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                hint = "pip install 'rag-app[torch-embed]'"
                raise RagAppError(f"embedding.backend = 'torch' needs sentence-transformers: {hint}") from exc
            import torch

            if self.settings.embedding.threads:
                torch.set_num_threads(self.settings.embedding.threads)
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = SentenceTransformer(str(self.info.folder), device=device, local_files_only=True)
            model.max_seq_length = self.max_tokens
            self._model = model
        return self._model

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed passages in batches of similar length; rows keep the input order.

        ``progress`` receives the number of texts finished in each batch (``tqdm.update`` fits).
        """
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return result
        model = self._ready()
        lengths = [min(len(e.ids), self.max_tokens) for e in self.tokenizer.encode_batch(list(texts))]
        size = batch_size or self.batch_size
        for batch in length_batches(lengths, size, token_budget=size * self.max_tokens):
            chunk = [texts[i] for i in batch]
            vectors = model.encode(chunk, batch_size=len(chunk), normalize_embeddings=True)
            result[batch] = np.asarray(vectors, dtype=np.float32)
            if progress is not None:
                progress(len(batch))
        return result

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query."""
        return self.embed_documents([text])[0]
