"""Multi-turn chat over an index: follow-ups resolved against history, turns stored in SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict

from rag_app.answer import Answer
from rag_app.answering import AnswerStream
from rag_app.conversations import ConversationStore, history_messages, retrieval_query
from rag_app.errors import QueryError

if TYPE_CHECKING:
    from rag_app.generation.base import Message
    from rag_app.rag import RAG


class _Turn(TypedDict):
    """What a question adds to :meth:`RAG.ask` / :meth:`RAG.stream` inside a conversation."""

    history: list[Message]
    retrieval_query: str


class ChatSession:
    """One conversation. Create it with :meth:`rag_app.RAG.chat`."""

    def __init__(self, rag: RAG, store: ConversationStore, conversation_id: str | None = None) -> None:
        self.rag = rag
        self.store = store
        if conversation_id is None:
            conversation_id = store.create(str(rag.index_dir))
        elif not store.exists(conversation_id):
            raise QueryError(f"no conversation with id {conversation_id!r}")
        self.id = conversation_id

    def ask(self, question: str) -> Answer:
        """Answer a question, using earlier turns for the search query and the prompt."""
        answer = self.rag.ask(question, **self._turn(question))
        self._record(question, answer)
        return answer

    def stream(self, question: str) -> Iterator[str]:
        """Yield text pieces; the finished answer is stored and then available as :attr:`last_answer`."""
        stream: AnswerStream = self.rag.stream(question, **self._turn(question))
        yield from stream
        assert stream.answer is not None
        self._record(question, stream.answer)
        self.last_answer = stream.answer

    def _turn(self, question: str) -> _Turn:
        """The earlier turns for the prompt, and what to search for (a follow-up joined to its question)."""
        past = self.store.messages(self.id)
        return {"history": history_messages(past), "retrieval_query": retrieval_query(question, past)}

    def _record(self, question: str, answer: Answer) -> None:
        self.store.add(self.id, "user", question)
        self.store.add(self.id, "assistant", answer.text, answer.to_dict())
        self.last_answer = answer
