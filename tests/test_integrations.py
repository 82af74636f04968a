"""The LlamaIndex and LangChain adapters, driven by the frameworks' own machinery over a real index.

Generation runs a tiny random-weight Llama (2 layers, greedy) with the packaged SmolLM2 tokenizer
and its chat template, inside real framework chat models: LlamaIndex's ``HuggingFaceLLM``, and a
small LangChain ``BaseChatModel`` written below (``langchain-huggingface`` pins
huggingface_hub<2 and would downgrade the 2.x installed beside transformers 5). Greedy decoding
is reproducible and the guard is off (it would rewrite or withhold answers), so the tests check
that an answer is exactly what the wrapped model produced for our messages.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core", reason="needs the llamaindex extra: pip install -e '.[dev]'")
pytest.importorskip("llama_index.llms.huggingface", reason="needs llama-index-llms-huggingface (dev extra)")
pytest.importorskip("langchain_core", reason="needs the langchain extra: pip install -e '.[dev]'")

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever as LCBaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from llama_index.core.base.base_retriever import BaseRetriever as LIBaseRetriever
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.llms import MessageRole
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.llms.huggingface import HuggingFaceLLM
from pydantic import ConfigDict, Field

from rag_app.documents import LoadedDocument, Section
from rag_app.errors import QueryError
from rag_app.generation.base import Generator, Message
from rag_app.integrations.langchain import LangChainChatGenerator, RagRunnable
from rag_app.integrations.llamaindex import LlamaIndexLLMGenerator, RagQueryEngine, RagRetriever
from rag_app.prompting import NOT_FOUND
from rag_app.rag import RAG
from rag_app.settings import Settings

DOCS = [
    LoadedDocument(
        "/docs/solar.pdf",
        "pdf",
        [
            Section(
                "Photovoltaic panels convert sunlight into electricity.", page=1, heading_path=("Solar",)
            ),
            Section(
                "Batteries store the surplus energy for the night.", page=2, heading_path=("Solar", "Storage")
            ),
        ],
    ),
    LoadedDocument(
        "/docs/bread.md",
        "markdown",
        [
            Section(
                "To bake bread, knead the dough for ten minutes and let it rise for an hour.",
                heading_path=("Baking",),
            )
        ],
    ),
    LoadedDocument(
        "/docs/rivers.html",
        "html",
        [Section("The Danube flows through ten countries before reaching the Black Sea.")],
    ),
]
BREAD_Q = "How long should bread dough rise?"
RIVER_Q = "Which sea does the Danube reach?"
MAX_NEW_TOKENS = 16


# -- shared fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def qa_settings(settings: Settings) -> Settings:
    """The session settings without the guard (its model is not part of these tests), short answers."""
    return settings.model_copy(
        update={
            "guard": settings.guard.model_copy(update={"enabled": False}),
            "generator": settings.generator.model_copy(update={"max_new_tokens": MAX_NEW_TOKENS}),
        }
    )


@pytest.fixture(scope="session")
def smollm2_tokenizer(settings: Settings) -> Any:
    """The packaged SmolLM2 tokenizer (with its chat template), from the converted model folder."""
    from transformers import AutoTokenizer

    from rag_app.models import generator_folder

    return AutoTokenizer.from_pretrained(generator_folder(settings))


@pytest.fixture(scope="session")
def tiny_llama(smollm2_tokenizer: Any) -> Any:
    """A 2-layer random-weight Llama over the SmolLM2 vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok),
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng():  # the same weights every run, without touching the global RNG
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, qa_settings: Settings, embedder: Any) -> Path:
    folder = tmp_path_factory.mktemp("integrations") / "index"
    RAG(folder, qa_settings, embedder=embedder).add_documents(DOCS)
    return folder


@pytest.fixture()
def rag(index_dir: Path, qa_settings: Settings, embedder: Any) -> Iterator[RAG]:
    rag = RAG(index_dir, qa_settings, embedder=embedder)
    yield rag
    rag.close()


# -- LlamaIndex ------------------------------------------------------------------------------
def _ids(nodes: Sequence[Any]) -> list[str]:
    return [n.node.node_id for n in nodes]


def test_llamaindex_retriever_nodes_carry_the_hits(rag: RAG) -> None:
    retriever = rag.as_llamaindex_retriever(k=3)
    assert isinstance(retriever, LIBaseRetriever)
    nodes = retriever.retrieve(BREAD_Q)
    hits = rag.search(BREAD_Q, k=3)
    assert _ids(nodes) == [str(h.chunk_id) for h in hits] and len(nodes) == 3
    assert nodes[0].node.metadata["source"] == "/docs/bread.md"
    for node, hit in zip(nodes, hits, strict=True):
        assert node.score == hit.score and node.node.get_content() == hit.text
        assert node.node.metadata == {
            "source": hit.source,
            "page": hit.page,
            "start": hit.start,
            "end": hit.end,
            "heading_path": list(hit.heading_path),
            "doc_id": hit.doc_id,
        }
        assert isinstance(node.node, TextNode)
        assert (node.node.start_char_idx, node.node.end_char_idx) == (hit.start, hit.end)
        assert node.node.ref_doc_id == hit.source
    scores = [n.get_score() for n in nodes]
    assert scores == sorted(scores, reverse=True)
    assert nodes[0].node.metadata["heading_path"] == ["Baking"]
    shown = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)  # what a synthesizer puts in a prompt
    assert "source: /docs/bread.md" in shown and "start:" not in shown and "knead the dough" in shown
    assert _ids(asyncio.run(retriever.aretrieve(BREAD_Q))) == _ids(nodes)
    pdf_only = RagRetriever(rag, k=5, formats=["pdf"]).retrieve(BREAD_Q)
    assert pdf_only and {n.node.metadata["source"] for n in pdf_only} == {"/docs/solar.pdf"}


def test_llamaindex_retriever_in_query_engine_postprocessor_and_fusion(
    rag: RAG, hf_llm: HuggingFaceLLM, smollm2_tokenizer: Any
) -> None:
    dense = RagRetriever(rag, k=4, mode="dense")
    nodes = dense.retrieve(RIVER_Q)
    scores = [n.score or 0.0 for n in nodes]
    assert len(nodes) == 4 and scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    cutoff = (scores[0] + scores[-1]) / 2
    synthesizer = NoText(llm=hf_llm, prompt_helper=PromptHelper(tokenizer=smollm2_tokenizer.encode))
    engine = RetrieverQueryEngine(
        dense,
        response_synthesizer=synthesizer,
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=cutoff)],
    )
    response = engine.query(RIVER_Q)
    kept = [n.node.node_id for n in nodes if (n.score or 0.0) >= cutoff]
    assert 0 < len(kept) < len(nodes)
    assert _ids(response.source_nodes) == kept
    assert response.source_nodes[0].node.metadata["source"] == "/docs/rivers.html"

    # LlamaIndex's reciprocal rank fusion over our dense and BM25 modes
    bm25 = RagRetriever(rag, k=4, mode="bm25")
    fusion = QueryFusionRetriever(
        [dense, bm25],
        llm=hf_llm,
        mode=FUSION_MODES.RECIPROCAL_RANK,
        num_queries=1,
        similarity_top_k=8,
        use_async=False,
    )
    fused = fusion.retrieve(RIVER_Q)
    expected: dict[str, float] = {}
    for mode in ("dense", "bm25"):
        for rank, hit in enumerate(rag.search(RIVER_Q, k=4, mode=mode)):
            expected[str(hit.chunk_id)] = expected.get(str(hit.chunk_id), 0.0) + 1.0 / (rank + 60.0)
    assert {n.node.node_id: pytest.approx(n.score) for n in fused} == expected
    assert fused[0].node.metadata["source"] == "/docs/rivers.html"


@pytest.fixture(scope="module")
def llm_debug() -> LlamaDebugHandler:
    return LlamaDebugHandler()


@pytest.fixture(scope="module")
def hf_llm(tiny_llama: Any, smollm2_tokenizer: Any, llm_debug: LlamaDebugHandler) -> HuggingFaceLLM:
    """LlamaIndex's HuggingFaceLLM over the tiny model; its debug handler records every chat call."""
    tok = smollm2_tokenizer
    return HuggingFaceLLM(
        model=tiny_llama,
        tokenizer=tok,
        model_name="tiny-llama",
        tokenizer_name=tok.name_or_path,
        context_window=2048,
        max_new_tokens=MAX_NEW_TOKENS,
        generate_kwargs={"do_sample": False, "min_new_tokens": 4, "pad_token_id": tok.pad_token_id},
        is_chat_model=True,
        device_map="cpu",
        callback_manager=CallbackManager([llm_debug]),
    )


@pytest.fixture()
def li_rag(
    index_dir: Path, qa_settings: Settings, embedder: Any, hf_llm: HuggingFaceLLM, smollm2_tokenizer: Any
) -> Iterator[RAG]:
    generator = LlamaIndexLLMGenerator(hf_llm, tokenizer=smollm2_tokenizer.encode)
    rag = RAG(index_dir, qa_settings, embedder=embedder, generator=generator)
    yield rag
    rag.close()


def _llm_calls(debug: LlamaDebugHandler) -> list[tuple[list[Any], str]]:
    """(messages, produced text) of every LlamaIndex chat call, from the LLM's own callback events."""
    calls = []
    for start, end in debug.get_event_pairs(CBEventType.LLM):
        started, ended = start.payload or {}, end.payload or {}
        if EventPayload.MESSAGES not in started:  # the completion call inside chat()
            continue
        messages = started[EventPayload.MESSAGES]
        response = ended[EventPayload.RESPONSE]
        calls.append((messages, response.message.content))
    return calls


def test_llamaindex_query_engine_answers_with_a_llamaindex_llm(
    li_rag: RAG, llm_debug: LlamaDebugHandler, smollm2_tokenizer: Any
) -> None:
    assert isinstance(li_rag.generator, Generator)
    assert li_rag.generator.model_id == "tiny-llama"
    llm_debug.flush_event_logs()
    engine = li_rag.as_llamaindex_query_engine(k=2)
    response = engine.query(BREAD_Q)
    assert isinstance(response, Response)

    [(messages, produced)] = _llm_calls(llm_debug)
    assert [m.role for m in messages] == [MessageRole.SYSTEM, MessageRole.USER]
    assert "knead the dough" in messages[1].content and messages[1].content.endswith(f"Question: {BREAD_Q}")
    assert response.response == produced.strip() != ""

    meta = response.metadata
    assert meta is not None
    assert meta["text"] == response.response and meta["model"] == "tiny-llama"
    assert meta["abstained"] is False and meta["grounding"] is None
    prompt_tokens = sum(len(smollm2_tokenizer.encode(m.content)) for m in messages)
    assert meta["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(smollm2_tokenizer.encode(produced)),
    }
    assert _ids(response.source_nodes) == [str(c["chunk_id"]) for c in meta["citations"]]
    assert [n.node.metadata["number"] for n in response.source_nodes] == [1, 2]
    assert {n.node.metadata["source"] for n in response.source_nodes} >= {"/docs/bread.md"}
    assert [n.score for n in response.source_nodes] == [c["score"] for c in meta["citations"]]

    # streaming: the same greedy text piece by piece; sources and the answer once exhausted
    streaming = RagQueryEngine(li_rag, k=2, streaming=True).query(BREAD_Q)
    assert isinstance(streaming, StreamingResponse)
    assert streaming.source_nodes == [] and streaming.metadata is None
    pieces = list(streaming.response_gen)
    assert len(pieces) > 1 and "".join(pieces).strip() == response.response
    assert streaming.metadata is not None and streaming.metadata["text"] == response.response
    assert _ids(streaming.source_nodes) == _ids(response.source_nodes)

    again = asyncio.run(engine.aquery(BREAD_Q))
    assert str(again) == response.response

    # nothing close to the question: the engine abstains without calling the LLM
    llm_debug.flush_event_logs()
    abstained = engine.query("zqxv wplmk trrgh")
    assert abstained.response == NOT_FOUND and abstained.metadata is not None
    assert abstained.metadata["abstained"] is True
    assert _llm_calls(llm_debug) == []


def test_llamaindex_llm_generator_stop_strings_and_token_counts(hf_llm: HuggingFaceLLM) -> None:
    generator = LlamaIndexLLMGenerator(hf_llm)
    messages: list[Message] = [{"role": "user", "content": "Say something."}]
    whole = generator.generate(messages)
    assert whole.text and whole.model == "tiny-llama"
    assert whole.completion_tokens == math.ceil(len(whole.text) / 4)  # no tokenizer: four characters a token
    assert "".join(generator.stream(messages)) == whole.text

    stop = whole.text[len(whole.text) // 2 :][:3]
    cut = whole.text.find(stop)
    assert generator.generate(messages, stop=[stop]).text == whole.text[:cut]
    assert "".join(generator.stream(messages, stop=["\x00never", stop])) == whole.text[:cut]


# -- LangChain -------------------------------------------------------------------------------
class TinyTransformersChat(BaseChatModel):
    """A LangChain chat model over a transformers causal LM: greedy, chat template, records calls.

    It ignores ``stop`` (as many chat models do), so the adapter's own stop handling is tested.
    ``_stream`` decodes first, then yields the text word by word.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    hf_model: Any
    tokenizer: Any
    model_name: str = "tiny-llama-lc"
    max_new_tokens: int = 64
    temperature: float = 0.7
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tiny-transformers-chat"

    def _complete(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> str:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles[m.type], "content": m.content} for m in messages]
        prompt = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(prompt, return_tensors="pt")
        max_new = kwargs.get("max_new_tokens", self.max_new_tokens)
        out = self.hf_model.generate(
            **inputs,
            max_new_tokens=max_new,
            min_new_tokens=min(4, max_new),
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        text = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        used = {"max_new_tokens": max_new, "temperature": self.temperature}
        self.calls.append({"messages": messages, "stop": stop, "kwargs": kwargs, "used": used, "text": text})
        return str(text)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._complete(messages, stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._complete(messages, stop, **kwargs)
        for word in re.findall(r"\s*\S+\s*|\s+", text):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk


@pytest.fixture(scope="module")
def lc_chat(tiny_llama: Any, smollm2_tokenizer: Any) -> TinyTransformersChat:
    return TinyTransformersChat(hf_model=tiny_llama, tokenizer=smollm2_tokenizer)


@pytest.fixture()
def lc_rag(
    index_dir: Path, qa_settings: Settings, embedder: Any, lc_chat: TinyTransformersChat
) -> Iterator[RAG]:
    rag = RAG(index_dir, qa_settings, embedder=embedder, generator=LangChainChatGenerator(lc_chat))
    yield rag
    rag.close()


def _format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{n}] ({d.metadata['source']}) {d.page_content}" for n, d in enumerate(docs, 1))


def test_langchain_retriever_in_lcel(rag: RAG) -> None:
    retriever = rag.as_langchain_retriever(k=3)
    assert isinstance(retriever, LCBaseRetriever)
    docs = retriever.invoke(BREAD_Q)
    hits = rag.search(BREAD_Q, k=3)
    assert [d.id for d in docs] == [str(h.chunk_id) for h in hits]
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.page_content == hit.text
        assert doc.metadata == {
            "source": hit.source,
            "page": hit.page,
            "start": hit.start,
            "end": hit.end,
            "heading_path": list(hit.heading_path),
            "doc_id": hit.doc_id,
            "chunk_id": hit.chunk_id,
            "score": hit.score,
        }
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)

    chain = retriever | RunnableLambda(_format_docs)
    context = chain.invoke(BREAD_Q)
    assert context.startswith("[1] (/docs/bread.md) To bake bread") and context == _format_docs(docs)

    bread, river = retriever.batch([BREAD_Q, RIVER_Q])
    assert [d.id for d in bread] == [d.id for d in docs]
    assert river[0].metadata["source"] == "/docs/rivers.html"
    assert [d.id for d in asyncio.run(retriever.ainvoke(RIVER_Q))] == [d.id for d in river]

    pages = retriever.model_copy(update={"k": 5, "formats": ("pdf",)}).invoke("energy at night")
    assert pages and {d.metadata["source"] for d in pages} == {"/docs/solar.pdf"}
    assert {d.metadata["page"] for d in pages} <= {1, 2}


async def _collect(pieces: AsyncIterator[Any]) -> list[Any]:
    return [p async for p in pieces]


def test_langchain_runnable_answers_and_streams_with_a_langchain_chat_model(
    lc_rag: RAG, lc_chat: TinyTransformersChat, qa_settings: Settings
) -> None:
    runnable = lc_rag.as_langchain_runnable(k=2)
    assert isinstance(runnable, RagRunnable)
    lc_chat.calls.clear()
    answer = runnable.invoke(BREAD_Q)

    [call] = lc_chat.calls
    assert [type(m) for m in call["messages"]] == [SystemMessage, HumanMessage]
    assert "knead the dough" in call["messages"][1].content
    assert call["messages"][1].content.endswith(f"Question: {BREAD_Q}")
    # the adapter set our generation settings on the fields the model declares (on a copy)
    assert call["used"] == {
        "max_new_tokens": MAX_NEW_TOKENS,
        "temperature": qa_settings.generator.temperature,
    }
    assert call["kwargs"] == {} and lc_chat.temperature == 0.7
    assert call["stop"] is None
    assert answer["text"] == call["text"].strip() != ""
    assert answer["model"] == "tiny-llama-lc" and answer["abstained"] is False
    assert [c["number"] for c in answer["citations"]] == [1, 2]
    assert "/docs/bread.md" in {c["source"] for c in answer["citations"]}

    assert runnable.invoke({"question": BREAD_Q})["text"] == answer["text"]
    pieces = list(runnable.stream(BREAD_Q))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip() == answer["text"]
    assert asyncio.run(_collect(runnable.astream(BREAD_Q))) == pieces

    chain = {"question": RunnablePassthrough()} | runnable | RunnableLambda(lambda a: a["text"])
    assert chain.invoke(BREAD_Q) == answer["text"]
    streamed = list((RunnableLambda(str.strip) | runnable).stream(f"  {BREAD_Q}  "))
    assert streamed == pieces

    with pytest.raises(QueryError, match="question"):
        runnable.invoke(42)  # type: ignore[arg-type]


def test_langchain_chat_generator_stop_strings_and_model_id(lc_chat: TinyTransformersChat) -> None:
    generator = LangChainChatGenerator(lc_chat)
    assert generator.model_id == "tiny-llama-lc"
    assert generator.count_tokens("twelve chars") == 3
    messages: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Say something."},
    ]
    lc_chat.calls.clear()
    whole = generator.generate(messages, max_new_tokens=12)
    assert [type(m) for m in lc_chat.calls[0]["messages"]] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        HumanMessage,
    ]
    assert whole.text == lc_chat.calls[0]["text"] and whole.model == "tiny-llama-lc"
    assert lc_chat.calls[0]["used"]["max_new_tokens"] == 12

    stop = whole.text[len(whole.text) // 2 :][:3]
    cut = whole.text.find(stop)
    assert generator.generate(messages, max_new_tokens=12, stop=[stop]).text == whole.text[:cut]
    assert lc_chat.calls[-1]["stop"] == [stop]  # passed on to the model, which ignores it
    assert "".join(generator.stream(messages, max_new_tokens=12, stop=[stop])) == whole.text[:cut]
