"""One copy of each model for many indexes: the REST server and the Streamlit app build their RAGs here.

An embedder is shared by every index with the same embedding settings (and cache), a generator by
every index with the same generator settings; models load on first use, once, under a lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from rag_app.embeddings.base import Embedder
from rag_app.generation.base import Generator
from rag_app.rag import RAG
from rag_app.settings import Settings

GeneratorFactory = Callable[[Settings], Generator]
"""Builds the generator from the settings (default: :func:`rag_app.generation.create_generator`)."""


class SharedModels:
    """Embedders and generators keyed by their settings, handed to each :class:`RAG` built by :meth:`rag`.

    ``embedder`` / ``generator`` replace the configured models for every settings value;
    ``generator_factory`` builds generators instead of the configured backend; ``wrap_generator``
    wraps each generator once (the server serializes calls and counts tokens).
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        generator_factory: GeneratorFactory | None = None,
        wrap_generator: Callable[[Generator], Generator] | None = None,
    ) -> None:
        self._fixed_embedder = embedder
        self._fixed_generator = generator
        self._factory = generator_factory
        self._wrap = wrap_generator
        self._embedders: dict[str, Embedder] = {}
        self._generators: dict[str, Generator] = {}
        self._lock = threading.Lock()

    def embedder(self, settings: Settings) -> Embedder:
        """The embedder for ``settings.embedding`` (built on first use)."""
        key = json.dumps([settings.embedding.model_dump(mode="json"), str(settings.cache_dir)])
        with self._lock:
            if key not in self._embedders:
                if self._fixed_embedder is not None:
                    self._embedders[key] = self._fixed_embedder
                else:
                    from rag_app.embeddings import create_embedder

                    self._embedders[key] = create_embedder(settings)
            return self._embedders[key]

    def generator(self, settings: Settings) -> Generator:
        """The generator for ``settings.generator`` (built, and wrapped, on first use)."""
        key = json.dumps([settings.generator.model_dump(mode="json"), str(settings.cache_dir)])
        if self._fixed_generator is not None:
            key = ""  # one generator whatever the settings
        with self._lock:
            if key not in self._generators:
                generator = self._fixed_generator or self._build_generator(settings)
                self._generators[key] = self._wrap(generator) if self._wrap else generator
            return self._generators[key]

    def _build_generator(self, settings: Settings) -> Generator:
        if self._factory is not None:
            return self._factory(settings)
        from rag_app.generation import create_generator

        return create_generator(settings)

    def rag(self, index_dir: str | Path, settings: Settings) -> RAG:
        """A :class:`RAG` over ``index_dir`` with this holder's models for ``settings``."""
        return RAG(index_dir, settings, embedder=self.embedder(settings), generator=self.generator(settings))
