"""Embedders: text to unit-norm float32 vectors. ``create_embedder`` picks the configured backend.

Importing this package loads no model and no heavy library (torch, onnxruntime, transformers);
each backend module is imported when it is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rag_app.embeddings.base import Embedder

if TYPE_CHECKING:
    from rag_app.settings import Settings

__all__ = ["BACKENDS", "Embedder", "create_embedder"]


def _onnx(settings: Settings) -> Embedder:
    from rag_app.embeddings.onnx_backend import OnnxEmbedder

    return OnnxEmbedder(settings)


def _torch(settings: Settings) -> Embedder:
    from rag_app.embeddings.torch_backend import TorchEmbedder

    return TorchEmbedder(settings)


BACKENDS: dict[str, Callable[[Settings], Embedder]] = {"onnx": _onnx, "torch": _torch}
"""``embedding.backend`` -> factory."""


def create_embedder(settings: Settings) -> Embedder:
    """The embedder named by ``settings.embedding`` (cheap: weights load on first use)."""
    from rag_app.errors import ConfigError

    factory = BACKENDS.get(settings.embedding.backend)
    if factory is None:
        choices = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"embedding.backend: {settings.embedding.backend!r} is not one of {choices}")
    return factory(settings)
