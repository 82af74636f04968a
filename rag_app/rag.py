"""The ``RAG`` facade: the one Python API that the CLI, the REST API and the Streamlit app call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.answer import Answer
from rag_app.answering import Answerer, AnswerStream
from rag_app.documents import Hit, LoadedDocument
from rag_app.embeddings.base import Embedder, embedder_model_name
from rag_app.errors import IndexNotFoundError, QueryError
from rag_app.generation.base import Generator, Message
from rag_app.ingest import Ingester, IngestReport, installed_ingester
from rag_app.retrieval import Filters, FixedPassages, HybridRetriever
from rag_app.settings import Settings
from rag_app.store.docstore import DocumentRow
from rag_app.store.index import IndexStore

if TYPE_CHECKING:
    from rag_app.chat import ChatSession
    from rag_app.conversations import ConversationStore
    from rag_app.guard import Guard
    from rag_app.prompting import Prompt


class RAG:
    """Retrieval-augmented generation over one index folder.

    Construction is cheap: the embedder and the index files load on first use. Without
    ``settings`` the library defaults apply; ``Settings.load()`` reads ``rag-app.toml`` and the
    environment, as the CLI, the server and the Streamlit app do. ``ingester`` writes documents
    (unset: the installed one, from the ``indexes`` package).

        rag = RAG("my-index", Settings.load())   # created on first ingest
        rag.ingest(["docs/"])
        for hit in rag.search("how do I install it?"):
            print(hit.source, hit.page, hit.text)
        answer = rag.ask("how do I install it?")
        print(answer.text, [(c.number, c.source, c.page) for c in answer.citations if c.cited])
    """

    def __init__(
        self,
        index_dir: str | Path,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        ingester: Ingester | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.settings = settings if settings is not None else Settings()
        self._embedder = embedder
        self._ingester = ingester
        self._store: IndexStore | None = None
        self._retriever: HybridRetriever | None = None
        self._generator = generator
        self._guard: Guard | None = None
        self._answerer: Answerer | None = None
        self._conversations: ConversationStore | None = None

    @classmethod
    def open(cls, index_dir: str | Path, settings: Settings | None = None, **kwargs: Any) -> RAG:
        """Open an existing index; raises :class:`IndexNotFoundError` (or a mismatch error) at once."""
        rag = cls(index_dir, settings, **kwargs)
        rag.store  # noqa: B018 - validate now rather than on the first query
        return rag

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from rag_app.embeddings import create_embedder

            self._embedder = create_embedder(self.settings)
        return self._embedder

    @property
    def store(self) -> IndexStore:
        """The opened index, checked against the configured embedding model."""
        if self._store is None:
            if not IndexStore.exists(self.index_dir):
                raise IndexNotFoundError(
                    f"no index at {self.index_dir}; "
                    f"create one with `rag-app ingest PATH --index {self.index_dir}`"
                )
            store = IndexStore.open(
                self.index_dir, self.settings.index.use_gpu, nprobe=self.settings.index.nprobe
            )
            store.manifest.check_compatible(embedder_model_name(self.embedder), self.embedder.dimension)
            self._store = store
        return self._store

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self._retriever = HybridRetriever(self.store, self.embedder, self.settings.retrieval)
        return self._retriever

    @property
    def ingester(self) -> Ingester:
        """What :meth:`ingest` and :meth:`add_documents` write through."""
        if self._ingester is None:
            self._ingester = installed_ingester()
        return self._ingester

    @property
    def ingest_formats(self) -> frozenset[str]:
        """The file extensions :meth:`ingest` loads (``.pdf``, ``.md``, ...)."""
        return self.ingester.extensions

    def ingest_files(self, paths: Sequence[str | Path]) -> list[Path]:
        """The files :meth:`ingest` would read under ``paths`` (folders walked, links followed)."""
        return self.ingester.files(paths, self.settings)

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        progress: bool = False,
        on_progress: Callable[[int, int, str], None] | None = None,
        wait: float | None = None,
    ) -> IngestReport:
        """Add, update (and with ``prune`` remove) documents of files and folders.

        ``on_progress(done, total, source)`` is called as each file is taken up (for a UI's progress bar).
        ``wait``: seconds to wait for another writer of the index (unset: ``index.lock_wait_s``)
        before :class:`IndexLockedError`.
        """
        report = self.ingester.ingest(
            paths,
            self.index_dir,
            self.settings,
            self.embedder,
            prune=prune,
            progress=progress,
            on_progress=on_progress,
            wait=wait,
        )
        if self._store is not None:
            self._store.refresh()
        return report

    def add_documents(
        self,
        documents: Sequence[LoadedDocument],
        *,
        progress: bool = False,
        on_progress: Callable[[int, int, str], None] | None = None,
        wait: float | None = None,
    ) -> IngestReport:
        """Index documents built in memory; a document's ``source`` is its key (same source: replaced).

        ``wait`` as in :meth:`ingest`.
        """
        report = self.ingester.ingest_documents(
            documents,
            self.index_dir,
            self.settings,
            self.embedder,
            progress=progress,
            on_progress=on_progress,
            wait=wait,
        )
        if self._store is not None:
            self._store.refresh()
        return report

    def search(
        self,
        query: str,
        k: int | None = None,
        *,
        source: str | None = None,
        formats: Sequence[str] = (),
        mode: str | None = None,
        mmr: bool | None = None,
    ) -> list[Hit]:
        """The ``k`` passages that best match ``query`` (hybrid dense + BM25 by default).

        ``source`` is a glob over file paths, ``formats`` limits to document formats,
        ``mode`` is ``hybrid``, ``dense`` or ``bm25``, ``mmr`` diversifies the results.
        """
        filters = Filters(source=source, formats=tuple(formats))
        return self.retriever.search(query, k, filters=filters, mode=mode, mmr_enabled=mmr)

    # -- answering ----------------------------------------------------------------------
    @property
    def generator(self) -> Generator:
        """The configured generator (built on first use)."""
        if self._generator is None:
            from rag_app.generation import create_generator

            self._generator = create_generator(self.settings)
        return self._generator

    @property
    def guard(self) -> Guard | None:
        """The hallucination guard, or None when ``guard.enabled`` is off."""
        if self._guard is None and self.settings.guard.enabled:
            from rag_app.guard import Guard

            g = self.settings.guard
            self._guard = Guard(
                self.embedder,
                model_path=g.model_path,
                threshold=g.threshold,
                short_threshold=g.short_threshold,
            )
        return self._guard

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = Answerer(self.retriever, self.generator, self.guard, self.settings)
        return self._answerer

    def ask(
        self,
        question: str,
        k: int | None = None,
        *,
        source: str | None = None,
        formats: Sequence[str] = (),
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer from the documents with numbered citations and a grounding check, or abstain.

        ``history`` holds earlier chat turns (for the prompt), ``retrieval_query`` what to search
        for instead of the question; ``max_tokens`` (at most ``generator.max_new_tokens``) and
        ``temperature`` replace the settings' for this call. ``on_step(name)`` is called as
        ``searching``, ``writing`` and ``checking`` begin."""
        return self.answerer.ask(
            question,
            k=k,
            filters=Filters(source=source, formats=tuple(formats)),
            history=history,
            retrieval_query=retrieval_query,
            max_tokens=max_tokens,
            temperature=temperature,
            on_step=on_step,
        )

    def ask_with_passages(self, question: str, passages: Sequence[Hit]) -> Answer:
        """Answer ``question`` from ``passages`` instead of the index's search results.

        Everything else is :meth:`ask`'s: the prompt, the generator, the guard and the abstentions.
        Passages with a dense score (from :meth:`search`) are rescored against ``question``, so
        ``guard.min_retrieval_score`` judges them as it would the search results; edited passages
        (a probe's counterfactual copy) are judged by what they now say."""
        answerer = Answerer(FixedPassages(passages, self.embedder), self.generator, self.guard, self.settings)
        return answerer.ask(question)

    def stream(
        self,
        question: str,
        k: int | None = None,
        *,
        source: str | None = None,
        formats: Sequence[str] = (),
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AnswerStream:
        """Like :meth:`ask`, yielding text as it is generated; the stream's ``.answer`` is set at the end."""
        return self.answerer.stream(
            question,
            k=k,
            filters=Filters(source=source, formats=tuple(formats)),
            history=history,
            retrieval_query=retrieval_query,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    def prompt(
        self, question: str, k: int | None = None, *, source: str | None = None, formats: Sequence[str] = ()
    ) -> Prompt | None:
        """The prompt :meth:`ask` would send for ``question``, without generating: its ``messages``
        and its ``sources`` (the passages behind ``[1]``, ``[2]``, ...). ``None`` when no passage is
        close enough (``guard.min_retrieval_score``) and :meth:`ask` would abstain before generating."""
        filters = Filters(source=source, formats=tuple(formats))
        return self.answerer.prompt_for(question, k=k, filters=filters)

    def chat(self, conversation_id: str | None = None) -> ChatSession:
        """A multi-turn conversation (new, or continued by id), stored under ``settings.data_dir``."""
        from rag_app.chat import ChatSession
        from rag_app.conversations import ConversationStore

        if self._conversations is None:
            self._conversations = ConversationStore(self.settings.data_dir)
        return ChatSession(self, self._conversations, conversation_id)

    # -- integrations -------------------------------------------------------------------
    def as_llamaindex_retriever(self, k: int | None = None) -> Any:
        """A LlamaIndex ``BaseRetriever`` over this index (nodes carry source, page and span)."""
        from rag_app.integrations.llamaindex import RagRetriever

        return RagRetriever(self, k=k)

    def as_llamaindex_query_engine(self, k: int | None = None) -> Any:
        """A LlamaIndex query engine answering with :meth:`ask` (citations as source nodes)."""
        from rag_app.integrations.llamaindex import RagQueryEngine

        return RagQueryEngine(self, k=k)

    def as_langchain_retriever(self, k: int | None = None) -> Any:
        """A LangChain ``BaseRetriever`` over this index (documents carry source, page and span)."""
        from rag_app.integrations.langchain import RagLangChainRetriever

        return RagLangChainRetriever(rag=self, k=k)

    def as_langchain_runnable(self, k: int | None = None) -> Any:
        """A LangChain ``Runnable``: question in, answer dict out (``invoke``, ``stream``, ``batch``)."""
        from rag_app.integrations.langchain import rag_runnable

        return rag_runnable(self, k=k)

    def documents(self) -> list[DocumentRow]:
        """Every indexed document."""
        return self.store.docstore.documents()

    def document(self, doc_id: int) -> DocumentRow | None:
        """The indexed document with this id (:attr:`DocumentRow.id`), or None."""
        return self.store.docstore.document_by_id(doc_id)

    def delete(self, sources: Sequence[str], *, wait: float | None = None) -> int:
        """Remove documents by source path; returns the number of chunks removed.

        ``wait`` as in :meth:`ingest`.
        """
        wait = self.settings.index.lock_wait_s if wait is None else wait
        with self.store.writer(self.settings.index, wait=wait) as writer:
            known = writer.sources()
            missing = [s for s in sources if s not in known]
            if missing:
                raise QueryError("not in the index: " + ", ".join(missing))
            return writer.delete(list(sources))

    def stats(self) -> dict[str, Any]:
        """Counts of what the index serves, sizes and build settings (:meth:`IndexStore.stats`)."""
        return self.store.stats()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
