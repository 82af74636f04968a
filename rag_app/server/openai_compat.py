"""The OpenAI chat-completions shapes: request, response, stream chunks.

The model name picks the index (``GET /v1/models`` lists them; ``rag-app`` means the default
index), the last user message is the question, and earlier user/assistant turns are the chat
history. Client system messages are ignored: the answer prompt has its own.

``content`` is always the guarded answer: a withheld answer is the abstention sentence (the draft
stays in ``rag.draft``), so a client that drops unknown fields (LangChain's ``ChatOpenAI``) never
shows an unsupported answer as the answer; with ``guard.on_unsupported = "mark"`` the content ends
with a warning. A stream sends text only as the guard clears it; if text already sent is withdrawn
at the end, the stream says so in-band before the abstention. Citations, grounding, timings and
abstention travel in an extra top-level ``rag`` field (the ``Answer`` as JSON), in a stream with
the last chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from rag_app.answer import Answer
from rag_app.conversations import StoredMessage, history_messages, retrieval_query
from rag_app.errors import QueryError
from rag_app.generation.base import Message
from rag_app.search_options import MAX_K
from rag_app.server.contract import INDEX_NAME_PATTERN

DEFAULT_MODEL = "rag-app"
"""The model name that means the server's default index."""


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        DEFAULT_MODEL,
        pattern=INDEX_NAME_PATTERN,
        description="An index name from GET /v1/models, or `rag-app` (default).",
    )
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, description="Capped by the server's generator.max_new_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    index: str | None = Field(
        None,
        pattern=INDEX_NAME_PATTERN,
        description="rag-app extra: the index to answer from (overrides model).",
    )
    k: int | None = Field(None, ge=1, le=MAX_K, description="rag-app extra: passages given to the generator.")

    def question_and_history(self) -> tuple[str, list[Message], str]:
        """The question, earlier turns as messages, and what to search for (follow-ups joined)."""
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise QueryError("the last message must come from the user (it is the question)")
        question = turns[-1].text()
        past = [StoredMessage(m.role, m.text(), None) for m in turns[:-1]]
        return question, history_messages(past), retrieval_query(question, past)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(answer: Answer, count: int | None = None) -> dict[str, int]:
    prompt = answer.usage.get("prompt_tokens", 0)
    completion = answer.usage.get("completion_tokens", 0) or (count or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def rag_extra(answer: Answer, index: str) -> dict[str, Any]:
    return {"index": index, **answer.to_dict()}


def completion(answer: Answer, model: str, index: str) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished answer."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(answer),
        "rag": rag_extra(answer, index),
    }


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    """One server-sent event holding a ``chat.completion.chunk``."""
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
    return sse(body)


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


DONE = "data: [DONE]\n\n"
