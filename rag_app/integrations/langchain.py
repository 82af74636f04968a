"""LangChain adapters, both ways: our index as a LangChain retriever and runnable, any LangChain
chat model as our :class:`~rag_app.generation.base.Generator`, and our generator as a LangChain
chat model (:class:`GeneratorChatModel`, e.g. a local model as RAGAS's judge).

Needs the ``langchain`` extra (``pip install 'rag-app[langchain]'``). This module is imported
only by :meth:`rag_app.RAG.as_langchain_retriever` and friends, or by you; ``import rag_app``
never loads LangChain.

    chain = rag.as_langchain_retriever(k=5) | RunnableLambda(format_docs)
    qa = rag.as_langchain_runnable(k=5)
    qa.invoke("how do I install it?")["text"]           # the whole Answer as a dict
    for piece in qa.stream("how do I install it?"):      # text pieces only
        print(piece, end="")
    rag = RAG("idx", Settings.load(), generator=LangChainChatGenerator(ChatOllama(model="llama3.2")))
    chat = GeneratorChatModel(generator=rag.generator)  # our generator in any LangChain chain
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from pydantic import PrivateAttr

from rag_app.documents import Hit
from rag_app.errors import QueryError
from rag_app.generation.base import Completion, Generator, Message
from rag_app.generation.repetition import first_stop, until_stop
from rag_app.rag import RAG
from rag_app.search_options import RetrievalMode

RagInput = str | Mapping[str, Any]
"""What :func:`rag_runnable` accepts: the question, or a mapping with a ``"question"`` key."""


def hit_document(hit: Hit) -> Document:
    """A retrieved passage as a LangChain ``Document``; ``id`` is the chunk id, the score is in metadata."""
    metadata = {
        "source": hit.source,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "heading_path": list(hit.heading_path),
        "doc_id": hit.doc_id,
        "chunk_id": hit.chunk_id,
        "score": hit.score,
    }
    return Document(id=str(hit.chunk_id), page_content=hit.text, metadata=metadata)


class RagLangChainRetriever(BaseRetriever):
    """Our hybrid search as a LangChain ``BaseRetriever`` (``invoke``, ``batch``, ``|`` in LCEL).

    ``k``, ``source``, ``formats``, ``mode`` and ``mmr`` mean what they mean in :meth:`RAG.search`
    (``None``: the configured default). Documents come best first.
    """

    rag: RAG
    k: int | None = None
    source: str | None = None
    """A glob over file paths."""
    formats: tuple[str, ...] = ()
    mode: RetrievalMode | None = None
    mmr: bool | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.rag.search(
            query, self.k, source=self.source, formats=self.formats, mode=self.mode, mmr=self.mmr
        )
        return [hit_document(hit) for hit in hits]


class RagRunnable(Runnable[RagInput, dict[str, Any]]):
    """:meth:`RAG.ask` as a LangChain ``Runnable``.

    Input: the question as a string, or a mapping with a ``"question"`` key (so
    ``{"question": RunnablePassthrough()} | runnable`` works).

    * ``invoke`` / ``batch`` / ``ainvoke`` return the checked answer, :meth:`Answer.to_dict`.
    * ``stream`` / ``astream`` (and streaming through a chain) yield only the text pieces as
      they are generated, then nothing else. The pieces are the model's raw text: the checked
      answer may differ (the guard adds citation marks, or abstains). Call ``invoke`` when you
      need citations or grounding.
    """

    def __init__(self, rag: RAG, k: int | None = None) -> None:
        self.rag = rag
        self.k = k

    def invoke(self, input: RagInput, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._call_with_config(self._ask, input, config, run_type="chain")

    def stream(self, input: RagInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        transformer = cast(Callable[[Iterator[RagInput]], Iterator[dict[str, Any]]], self._pieces)
        yield from self._transform_stream_with_config(iter([input]), transformer, config, run_type="chain")

    async def astream(
        self, input: RagInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[RagInput]:
            yield input

        transformer = cast(Callable[[AsyncIterator[RagInput]], AsyncIterator[dict[str, Any]]], self._apieces)
        async for piece in self._atransform_stream_with_config(one(), transformer, config, run_type="chain"):
            yield piece

    def _ask(self, input: RagInput) -> dict[str, Any]:
        return self.rag.ask(question_of(input), self.k).to_dict()

    def _pieces(self, inputs: Iterator[RagInput]) -> Iterator[str]:
        *_, last = inputs  # stream() passes exactly one input
        yield from self.rag.stream(question_of(last), self.k)

    async def _apieces(self, inputs: AsyncIterator[RagInput]) -> AsyncIterator[str]:
        last = [item async for item in inputs][-1]
        # retrieval and each decoding step block: run them off the event loop
        stream = await run_in_executor(None, self.rag.stream, question_of(last), self.k)
        pieces, done = iter(stream), object()
        while (piece := await run_in_executor(None, next, pieces, done)) is not done:
            yield cast(str, piece)


def rag_runnable(rag: RAG, k: int | None = None) -> RagRunnable:
    """A :class:`RagRunnable` answering over ``rag`` with ``k`` passages."""
    return RagRunnable(rag, k)


def question_of(input: RagInput) -> str:
    """The question in a runnable's input; :class:`QueryError` for anything else."""
    if isinstance(input, str):
        return input
    if isinstance(input, Mapping) and isinstance(input.get("question"), str):
        return cast(str, input["question"])
    raise QueryError(
        f"expected a question string or a mapping with a 'question' string, got {type(input).__name__}: "
        f"{input!r:.80}"
    )


class LangChainChatGenerator:
    """Any LangChain ``BaseChatModel`` (ChatOllama, ChatOpenAI, ChatHuggingFace, ...) as our ``Generator``.

    Messages become ``SystemMessage``/``HumanMessage``/``AIMessage``; ``stop`` is passed to the
    model and also applied here (for models that ignore it). ``max_new_tokens`` and
    ``temperature`` are set on a copy of the model where it declares a field for them
    (``max_tokens``, ``max_new_tokens``, ``max_output_tokens`` or ``num_predict``; ``temperature``),
    otherwise the model's own settings apply. A copy rather than ``.bind(...)``: bound keyword
    arguments go into the provider's request as they are, and not every provider takes them
    there (ChatOllama wants them inside ``options``), while every model reads its own fields.

    ``count_tokens`` uses ``tokenizer`` (``str -> list``), else the model's ``custom_get_token_ids``,
    else four characters a token; never LangChain's default, which downloads a GPT-2 tokenizer.
    """

    LENGTH_FIELDS = ("max_tokens", "max_new_tokens", "max_output_tokens", "num_predict")

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        tokenizer: Callable[[str], Sequence[Any]] | None = None,
        model_id: str | None = None,
        adapter_id: str | None = None,
    ) -> None:
        self.chat_model = chat_model
        self.tokenizer = tokenizer
        self.model_id: str = model_id or _model_name(chat_model)
        self.adapter_id: str | None = adapter_id

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """One ``invoke``; usage and finish reason from the reply where the model reports them."""
        model = self._configured(max_new_tokens, temperature)
        t0 = time.perf_counter()
        reply = model.invoke(_lc_messages(messages), stop=list(stop) or None)
        total = max(time.perf_counter() - t0, 1e-9)
        text = _content_text(reply.content)
        cut = first_stop(text, stop)
        finish = "stop" if cut is not None else _finish_reason(reply)
        if cut is not None:
            text = text[:cut]
        usage = reply.usage_metadata if isinstance(reply, AIMessage) else None
        if usage:
            prompt_tokens, completion_tokens = usage["input_tokens"], usage["output_tokens"]
        else:
            prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
            completion_tokens = self.count_tokens(text)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
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
        """The text of each streamed chunk, ending before a stop string."""
        model = self._configured(max_new_tokens, temperature)
        chunks = model.stream(_lc_messages(messages), stop=list(stop) or None)
        try:
            yield from until_stop((_content_text(c.content) for c in chunks), stop)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def count_tokens(self, text: str) -> int:
        """Tokens by ``tokenizer``, else ``custom_get_token_ids``, else ``ceil(len(text) / 4)``."""
        if self.tokenizer is not None:
            return len(self.tokenizer(text))
        custom = self.chat_model.custom_get_token_ids
        if custom is not None:
            return len(custom(text))
        return math.ceil(len(text) / 4)

    def _configured(self, max_new_tokens: int, temperature: float) -> BaseChatModel:
        """The chat model with our output length and temperature, where it has fields for them."""
        fields = type(self.chat_model).model_fields
        update: dict[str, Any] = {}
        length_field = next((f for f in self.LENGTH_FIELDS if f in fields), None)
        if length_field is not None:
            update[length_field] = max_new_tokens
        if "temperature" in fields:
            update["temperature"] = temperature
        return self.chat_model.model_copy(update=update) if update else self.chat_model


class GeneratorChatModel(BaseChatModel):
    """Our :class:`Generator` (transformers, llama.cpp, an OpenAI-compatible server) as a LangChain
    ``BaseChatModel``: system, human and AI messages in, one AI message out, with token usage.

    Calls are serialised (a local model decodes one request at a time); the async methods run
    them in LangChain's executor, which is what async-only callers such as RAGAS need.
    ``max_new_tokens`` and ``temperature`` are the defaults; a call's ``temperature`` (RAGAS sends
    one) overrides it.
    """

    generator: Any
    max_new_tokens: int = 512
    temperature: float = 0.0
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "rag-app-generator"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": getattr(self.generator, "model_id", ""),
            "adapter": getattr(self.generator, "adapter_id", None),
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ours: list[Message] = [_our_message(m) for m in messages]
        generator = cast(Generator, self.generator)
        temperature = float(kwargs.get("temperature", self.temperature) or 0.0)
        max_new = int(kwargs.get("max_tokens") or kwargs.get("max_new_tokens") or self.max_new_tokens)
        with self._lock:
            done = generator.generate(ours, max_new_tokens=max_new, temperature=temperature, stop=stop or ())
        usage = {
            "input_tokens": done.prompt_tokens,
            "output_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }
        reply = AIMessage(
            content=done.text,
            usage_metadata=usage,
            response_metadata={"finish_reason": done.finish_reason, "model": done.model},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])


_OUR_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def _our_message(message: BaseMessage) -> Message:
    role = _OUR_ROLES.get(message.type)
    if role is None:
        raise QueryError(
            f"GeneratorChatModel takes system, human and AI messages, got a {message.type!r} message"
        )
    return cast(Message, {"role": role, "content": _content_text(message.content)})


def _model_name(chat_model: BaseChatModel) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(chat_model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


_MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}


def _lc_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    return [_MESSAGE_TYPES[m["role"]](content=m["content"]) for m in messages]


def _content_text(content: str | list[Any]) -> str:
    """The text of a message's content: a string, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _finish_reason(reply: BaseMessage) -> str:
    reason = reply.response_metadata.get("finish_reason") or reply.response_metadata.get("stop_reason")
    return "length" if reason in {"length", "max_tokens"} else "stop"
