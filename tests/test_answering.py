"""Prompting, abstention, citation marking and chat history, around a scripted generator.

The scripted generator replays fixed text so that what is tested here is the answerer's own
logic; the real models are exercised in tests/test_generation.py and tests/test_ask.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rag_app.answer import Grounding, SentenceSupport
from rag_app.answering import NO_SUPPORTED_ANSWER, Answerer, _cite_every_sentence
from rag_app.conversations import ConversationStore, StoredMessage, history_messages, retrieval_query
from rag_app.documents import Hit, LoadedDocument, Section
from rag_app.errors import QueryError
from rag_app.generation.base import Completion, Message
from rag_app.prompting import NOT_FOUND, build_prompt, cited_numbers, is_not_found, reorder_for_context
from rag_app.rag import RAG


class ScriptedGenerator:
    """Test double: answers with the next scripted text and records the messages it got."""

    model_id = "scripted"
    adapter_id = None

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.calls: list[list[Message]] = []

    def generate(self, messages: Sequence[Message], **_: object) -> Completion:
        self.calls.append(list(messages))
        return Completion(text=self.texts.pop(0), model=self.model_id)

    def stream(self, messages: Sequence[Message], **_: object) -> Iterator[str]:
        text = self.generate(messages).text
        for i in range(0, len(text), 7):
            yield text[i : i + 7]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _hit(i: int, text: str = "", score: float = 1.0) -> Hit:
    return Hit(i, text or f"passage {i}", f"/docs/f{i}.md", None, 0, 10, score)


def test_sources_are_reordered_against_lost_in_the_middle() -> None:
    hits = [_hit(i) for i in range(1, 6)]
    assert [h.chunk_id for h in reorder_for_context(hits)] == [1, 3, 5, 4, 2]


def test_prompt_keeps_the_best_sources_within_budget() -> None:
    hits = [_hit(i, " ".join(["word"] * 50)) for i in range(1, 6)]
    prompt = build_prompt("q?", hits, count_tokens=lambda t: len(t.split()), budget_tokens=130)
    assert sorted(h.chunk_id for h in prompt.sources) == [1, 2]
    assert prompt.messages[0]["role"] == "system" and "[1]" in prompt.messages[0]["content"]
    assert prompt.messages[-1]["content"].endswith("Question: q?")
    tiny = build_prompt("q?", hits[:1], count_tokens=lambda t: len(t.split()), budget_tokens=10)
    assert len(tiny.sources[0].text.split()) <= 10
    assert tiny.sources[0].end - tiny.sources[0].start == len(tiny.sources[0].text)


def test_citation_parsing_and_not_found() -> None:
    assert cited_numbers("Paris [2]. It is big [1][2].") == [2, 1]
    assert is_not_found(NOT_FOUND) and is_not_found("i could not find the answer in the documents")
    assert not is_not_found("Paris is the capital [1].")


def test_uncited_supported_sentences_get_their_evidence() -> None:
    text = "Paris is the capital. It has 2 million people [2]. Cheese grows on trees."
    sentences = [
        SentenceSupport("Paris is the capital.", 0, 21, 0.9, [], [1]),
        SentenceSupport("It has 2 million people [2].", 22, 50, 0.8, [2], [2]),
        SentenceSupport("Cheese grows on trees.", 51, 73, 0.1, [], [1], flagged=True),
    ]
    new_text, grounding = _cite_every_sentence(text, Grounding(0.4, sentences), 2)
    assert new_text == "Paris is the capital [1]. It has 2 million people [2]. Cheese grows on trees."
    for s in grounding.sentences:
        assert new_text[s.start : s.end] == s.text
    assert grounding.sentences[0].citations == [1]
    assert grounding.sentences[2].citations == []  # flagged: no support is claimed


def test_follow_up_questions_use_the_previous_question() -> None:
    past = [
        StoredMessage("user", "Who designed the Eiffel Tower?", None),
        StoredMessage("assistant", "Eiffel.", None),
    ]
    assert retrieval_query("When was it built?", past) == "Who designed the Eiffel Tower? When was it built?"
    assert retrieval_query("What is the boiling point of water at sea level?", past).startswith("What is")
    assert retrieval_query("Anything?", []) == "Anything?"
    assert history_messages(past) == [
        {"role": "user", "content": "Who designed the Eiffel Tower?"},
        {"role": "assistant", "content": "Eiffel."},
    ]


def test_conversation_store_roundtrip(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    cid = store.create("/idx")
    store.add(cid, "user", "hi")
    store.add(cid, "assistant", "hello", {"text": "hello"})
    assert [m.role for m in store.messages(cid)] == ["user", "assistant"]
    assert store.messages(cid)[1].answer == {"text": "hello"}
    assert store.list("/idx")[0]["id"] == cid
    reopened = ConversationStore(tmp_path)
    assert reopened.exists(cid)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory, settings, embedder) -> Path:
    folder = tmp_path_factory.mktemp("answering") / "index"
    docs = [
        LoadedDocument("/docs/paris.md", "markdown", [Section("Paris is the capital of France.")]),
        LoadedDocument("/docs/tower.md", "markdown", [Section("The Eiffel Tower was completed in 1889.")]),
    ]
    RAG(folder, settings, embedder=embedder).add_documents(docs)
    return folder


def _answerer(folder: Path, settings, embedder, generator: ScriptedGenerator, **guard: object) -> Answerer:
    s = settings.model_copy(deep=True)
    for key, value in guard.items():
        setattr(s.guard, key, value)
    rag = RAG(folder, s, embedder=embedder, generator=generator)
    return rag.answerer


def test_unrelated_question_abstains_without_generating(small_index: Path, settings, embedder) -> None:
    generator = ScriptedGenerator("should not be used")
    answerer = _answerer(small_index, settings, embedder, generator, enabled=False, min_retrieval_score=0.6)
    answer = answerer.ask("How do I replace a bicycle chain?")
    assert answer.abstained and answer.text == NOT_FOUND
    assert generator.calls == []
    assert answer.citations  # the closest passages are still shown
    assert not any(c.cited for c in answer.citations)


def test_model_saying_not_found_is_an_abstention(small_index: Path, settings, embedder) -> None:
    generator = ScriptedGenerator(NOT_FOUND)
    answer = _answerer(small_index, settings, embedder, generator, enabled=False).ask(
        "What is the capital of France?"
    )
    assert answer.abstained and "no answer" in answer.abstain_reason
    assert "[1]" in generator.calls[0][-1]["content"]


def test_cited_answer_and_stream(small_index: Path, settings, embedder) -> None:
    text = "Paris is the capital of France [1]."
    answerer = _answerer(small_index, settings, embedder, ScriptedGenerator(text, text), enabled=False)
    answer = answerer.ask("What is the capital of France?")
    assert not answer.abstained and answer.text == text
    cited = [c for c in answer.citations if c.cited]
    assert len(cited) == 1 and cited[0].number == 1 and cited[0].source == "/docs/paris.md"
    assert {"retrieval", "generation", "total"} <= set(answer.timings)
    stream = answerer.stream("What is the capital of France?")
    assert "".join(stream) == text
    assert stream.answer is not None and stream.answer.text == text


def test_bad_questions_are_refused(small_index: Path, settings, embedder) -> None:
    answerer = _answerer(small_index, settings, embedder, ScriptedGenerator(), enabled=False)
    with pytest.raises(QueryError, match="empty"):
        answerer.ask("   ")
    with pytest.raises(QueryError, match="limit"):
        answerer.ask("why? " * 20_000)


def test_unsupported_answer_is_withheld(small_index: Path, settings, embedder) -> None:
    generator = ScriptedGenerator("The Eiffel Tower is made of chocolate and was built on the Moon in 2020.")
    answerer = _answerer(small_index, settings, embedder, generator, enabled=True, min_grounding=0.5)
    answer = answerer.ask("What is the Eiffel Tower made of?")
    assert answer.grounding is not None and answer.grounding.flagged
    assert answer.abstained and answer.text == NO_SUPPORTED_ANSWER
