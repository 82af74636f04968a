"""LlamaIndex adapters, both ways: our index as a LlamaIndex retriever and query engine, and any
LlamaIndex ``LLM`` as our :class:`~rag_app.generation.base.Generator`.

Needs the ``llamaindex`` extra (``pip install 'rag-app[llamaindex]'``). This module is imported
only by :meth:`rag_app.RAG.as_llamaindex_retriever` and friends, or by you; ``import rag_app``
never loads LlamaIndex. Nothing here touches LlamaIndex's global ``Settings`` (whose LLM,
embedding model and tokenizer defaults reach for OpenAI or download files).

    retriever = rag.as_llamaindex_retriever(k=5)        # a BaseRetriever: use it in any engine
    engine = rag.as_llamaindex_query_engine(k=5)        # query() -> Response with source nodes
    rag = RAG("idx", Settings.load(), generator=LlamaIndexLLMGenerator(Ollama(model="llama3.2")))
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import RESPONSE_TYPE, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import LLM
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from rag_app.answer import Answer, Citation
from rag_app.documents import Hit
from rag_app.generation.base import Completion, Message
from rag_app.generation.repetition import first_stop, until_stop

if TYPE_CHECKING:
    from rag_app.rag import RAG

_NOT_FOR_MODELS = ["start", "end", "doc_id", "number", "cited"]
"""Metadata keys kept out of the text LlamaIndex embeds or shows an LLM (offsets and ids are noise)."""


def hit_node(hit: Hit) -> NodeWithScore:
    """A retrieved passage as a LlamaIndex node: ``id_`` is the chunk id, the score is the fused score."""
    metadata = {
        "source": hit.source,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "heading_path": list(hit.heading_path),
        "doc_id": hit.doc_id,
    }
    node = _node(str(hit.chunk_id), hit.text, hit.source, hit.start, hit.end, metadata)
    return NodeWithScore(node=node, score=hit.score)


def citation_node(citation: Citation) -> NodeWithScore:
    """A numbered source of an answer as a node; ``number`` and ``cited`` say how the answer uses it."""
    metadata = {
        "source": citation.source,
        "page": citation.page,
        "start": citation.start,
        "end": citation.end,
        "heading_path": list(citation.heading_path),
        "number": citation.number,
        "cited": citation.cited,
    }
    node = _node(
        str(citation.chunk_id), citation.text, citation.source, citation.start, citation.end, metadata
    )
    return NodeWithScore(node=node, score=citation.score)


def _node(node_id: str, text: str, source: str, start: int, end: int, metadata: dict[str, Any]) -> TextNode:
    return TextNode(
        id_=node_id,
        text=text,
        metadata=metadata,
        start_char_idx=start,
        end_char_idx=end,
        excluded_embed_metadata_keys=list(_NOT_FOR_MODELS),
        excluded_llm_metadata_keys=list(_NOT_FOR_MODELS),
        # node.ref_doc_id is then the document's path, the key the index knows documents by
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=source)},
    )


class RagRetriever(BaseRetriever):
    """Our hybrid search as a LlamaIndex ``BaseRetriever``; plugs into any engine, fusion or postprocessor.

    ``k``, ``source``, ``formats``, ``mode`` and ``mmr`` mean what they mean in :meth:`RAG.search`
    (``None``: the configured default). Nodes come best first with the retrieval score.
    """

    def __init__(
        self,
        rag: RAG,
        k: int | None = None,
        *,
        source: str | None = None,
        formats: Sequence[str] = (),
        mode: str | None = None,
        mmr: bool | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.rag = rag
        self.k = k
        self.source = source
        self.formats = tuple(formats)
        self.mode = mode
        self.mmr = mmr

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        hits = self.rag.search(
            query, self.k, source=self.source, formats=self.formats, mode=self.mode, mmr=self.mmr
        )
        return [hit_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class RagQueryEngine(BaseQueryEngine):
    """:meth:`RAG.ask` as a LlamaIndex query engine.

    ``query()`` returns a ``Response``: ``response`` is the answer text, ``source_nodes`` the
    numbered sources (see :func:`citation_node`), ``metadata`` the whole :meth:`Answer.to_dict`
    (grounding, abstained, timings, usage). With ``streaming=True`` it returns a
    ``StreamingResponse`` whose ``response_gen`` yields the text as generated; its
    ``source_nodes`` and ``metadata`` are filled in once the generator is exhausted, and
    ``metadata["text"]`` is then the checked answer (the guard may add citation marks or abstain).
    """

    def __init__(
        self,
        rag: RAG,
        k: int | None = None,
        *,
        streaming: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager)
        self.rag = rag
        self.k = k
        self.streaming = streaming

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The passages the engine would answer from (before the prompt's token budget)."""
        return RagRetriever(self.rag, self.k, callback_manager=self.callback_manager).retrieve(query_bundle)

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        if self.streaming:
            return self._stream(query_bundle.query_str)
        answer = self.rag.ask(query_bundle.query_str, self.k)
        return Response(answer.content, [citation_node(c) for c in answer.citations], answer.to_dict())

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await asyncio.to_thread(self._query, query_bundle)

    def _stream(self, question: str) -> StreamingResponse:
        stream = self.rag.stream(question, self.k)

        def pieces() -> Generator[str, None, None]:
            yield from stream
            answer: Answer | None = stream.answer
            if answer is not None:  # `response` is bound below, before the first piece is asked for
                response.source_nodes.extend(citation_node(c) for c in answer.citations)
                response.metadata = answer.to_dict()

        response = StreamingResponse(response_gen=pieces(), source_nodes=[], metadata=None)
        return response


class LlamaIndexLLMGenerator:
    """Any LlamaIndex ``LLM`` (Ollama, OpenAI, HuggingFaceLLM, ...) as our ``Generator``.

    LlamaIndex LLMs take their output length and temperature when they are built, so
    ``max_new_tokens`` and ``temperature`` are not forwarded: configure them on the LLM. Stop
    strings are applied here, to whole and streamed answers alike. ``count_tokens`` uses
    ``tokenizer`` (a LlamaIndex-style ``str -> list`` callable such as ``hf_tokenizer.encode``)
    when given, else approximates four characters a token; it never downloads a tokenizer.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        tokenizer: Callable[[str], Sequence[Any]] | None = None,
        adapter_id: str | None = None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        name = llm.metadata.model_name
        self.model_id: str = name if name and name != "unknown" else llm.class_name()
        self.adapter_id: str | None = adapter_id

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """One ``llm.chat`` call; usage from the response where the LLM reports it, else counted."""
        t0 = time.perf_counter()
        response = self.llm.chat(_chat_messages(messages))
        total = max(time.perf_counter() - t0, 1e-9)
        text = response.message.content or ""
        cut = first_stop(text, stop)
        if cut is not None:
            text = text[:cut]
        extra = response.additional_kwargs or {}
        prompt_tokens = extra.get("prompt_tokens")
        completion_tokens = extra.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = self.count_tokens(text)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=self.model_id,
            adapter=self.adapter_id,
            timings={"first_token": total, "total": total, "tokens_per_s": completion_tokens / total},
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """The ``delta`` of each ``llm.stream_chat`` response, ending before a stop string."""
        responses = self.llm.stream_chat(_chat_messages(messages))
        try:
            yield from until_stop((r.delta or "" for r in responses), stop)
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()

    def count_tokens(self, text: str) -> int:
        """Tokens by ``tokenizer`` when given, else ``ceil(len(text) / 4)``."""
        if self.tokenizer is not None:
            return len(self.tokenizer(text))
        return math.ceil(len(text) / 4)


_ROLES = {"system": MessageRole.SYSTEM, "user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}


def _chat_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    return [ChatMessage(role=_ROLES[m["role"]], content=m["content"]) for m in messages]
