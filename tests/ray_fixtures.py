"""Embedder factories for the Ray ingest tests that kill a process at the first embedding call.

Ray ships them to its workers by value (:func:`register`), since the workers cannot import the
``tests`` folder. Each builds the real packaged embedder from the settings and delegates to it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.embeddings import create_embedder
from rag_app.embeddings.base import Embedder
from rag_app.settings import Settings


def register() -> None:
    """Let Ray pickle this module's classes by value (its workers have no ``tests`` on their path)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Killing:
    """The real embedder, with ``before_embed`` called before each ``embed_documents``."""

    def __init__(self, inner: Embedder, factory: KillingFactory) -> None:
        self.inner = inner
        self.factory = factory
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def embed_documents(self, texts: Sequence[str], **kwargs: Any) -> Any:
        self.factory.before_embed()
        return self.inner.embed_documents(texts, **kwargs)

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)


@dataclass
class KillingFactory:
    """Builds an embedder that SIGKILLs a process when it first embeds.

    ``mode``: ``once`` kills its own worker the first time only (``marker`` records it),
    ``always`` kills its own worker every time, ``driver`` kills the process ``pid``.
    """

    settings: Settings
    mode: str
    marker: Path
    pid: int = 0

    def __call__(self) -> Embedder:
        return _Killing(create_embedder(self.settings), self)

    def before_embed(self) -> None:
        if self.mode == "driver":
            self.marker.touch()
            os.kill(self.pid, signal.SIGKILL)
            return
        if self.mode == "once":
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # killed once already: embed this time
        else:
            self.marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
