"""What the routes share: the served indexes (one ``RAG`` each), one embedder, one serialized generator.

Model calls block, so routes run them in worker threads; the generator takes one request at a
time (a model is not safe to drive from two threads, and on a CPU two at once are not faster).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from rag_app.embeddings.base import Embedder
from rag_app.errors import IndexNotFoundError, QueryError
from rag_app.generation.base import Completion, Generator, Message
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.shared_models import SharedModels
from rag_app.store.index import IndexStore

INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SerializedGenerator:
    """Wraps a :class:`Generator`: one generation at a time, tokens counted."""

    def __init__(self, inner: Generator, on_tokens: Callable[[int], None] = lambda n: None) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.adapter_id = inner.adapter_id
        self.on_tokens = on_tokens
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        with self._lock:
            result = self.inner.generate(
                messages, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop
            )
        self.on_tokens(result.completion_tokens or self.count_tokens(result.text))
        return result

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        pieces: list[str] = []
        with self._lock:
            for piece in self.inner.stream(
                messages, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop
            ):
                pieces.append(piece)
                yield piece
        self.on_tokens(self.count_tokens("".join(pieces)))

    def count_tokens(self, text: str) -> int:
        with self._tokenizer_lock:
            return self.inner.count_tokens(text)


class Indexes:
    """The index folders under ``indexes_dir``, each opened once as a :class:`RAG` that shares the models."""

    def __init__(
        self,
        settings: Settings,
        indexes_dir: Path,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        on_tokens: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.settings = settings
        self.folder = indexes_dir
        self.models = SharedModels(
            embedder=embedder, generator=generator, wrap_generator=lambda g: SerializedGenerator(g, on_tokens)
        )
        self._rags: dict[str, RAG] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if INDEX_NAME.fullmatch(p.name) and IndexStore.exists(p)
        )

    def resolve(self, name: str | None) -> str:
        """The index name to use: ``name``, else ``server.default_index``; checked against traversal."""
        name = name or self.settings.server.default_index
        if not name:
            raise QueryError("name an index (no server.default_index is set); GET /indexes lists them")
        if not INDEX_NAME.fullmatch(name):
            raise QueryError(
                f"index name {name!r} is not allowed: use letters, digits, '.', '_' and '-' (64 at most)"
            )
        return name

    def get(self, name: str | None, *, create: bool = False) -> RAG:
        """The :class:`RAG` of an existing index (``create``: also one that ingest will create)."""
        name = self.resolve(name)
        folder = self.folder / name
        if not create and not IndexStore.exists(folder):
            raise IndexNotFoundError(f"no index named {name!r}; GET /indexes lists them")
        with self._lock:
            rag = self._rags.get(name)
        if rag is None:
            rag = self.models.rag(folder, self.settings)
            with self._lock:
                rag = self._rags.setdefault(name, rag)
        return rag

    def close(self) -> None:
        with self._lock:
            for rag in self._rags.values():
                rag.close()
            self._rags.clear()


async def iterate_in_thread(make: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """Run a blocking iterator in its own thread and yield its items on the event loop.

    The iterator starts and ends in that one thread (a lock it takes is released there). When the
    consumer stops early (a client disconnected), the thread stops at the next item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            for item in make():
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                if stop.is_set():
                    break
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    thread = threading.Thread(target=context.run, args=(work,), name="rag-app-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield str(value)
            elif kind == "error":
                assert isinstance(value, BaseException)
                raise value
            else:
                return
    finally:
        stop.set()
