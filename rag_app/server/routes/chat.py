"""The OpenAI-compatible routes: each index is a model; chat completions, plain or streamed.

The request and response shapes are in :mod:`rag_app.server.openai_compat`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag_app import errors
from rag_app.answering import AnswerStream
from rag_app.rag import RAG
from rag_app.server import openai_compat as oa
from rag_app.server.auth import READ, AuthFirstRoute
from rag_app.server.contract import AUTH, documented, error_body, kind_of, status_of
from rag_app.server.observability import LOG
from rag_app.server.runtime import iterate_in_thread
from rag_app.server.state import ServerState, State

router = APIRouter(route_class=AuthFirstRoute)


@router.get("/v1/models", tags=["openai"], dependencies=READ, responses=documented(*AUTH))
async def list_models(state: State) -> dict[str, Any]:
    """OpenAI-compatible: each index is a model; ``rag-app`` is the default index when one is set."""
    names = await run_in_threadpool(state.indexes.names)
    if state.settings.default_index:
        names = [oa.DEFAULT_MODEL, *names]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "rag-app"} for n in names],
    }


@router.post(
    "/v1/chat/completions",
    tags=["openai"],
    dependencies=READ,
    response_model=None,
    responses=documented(*AUTH, 400, 404, 409, 413, 422, 500, 502, 503),
)
async def chat_completions(
    body: oa.ChatCompletionRequest, state: State
) -> dict[str, Any] | StreamingResponse:
    """OpenAI-compatible chat over an index (``model`` or ``index``); ``stream`` sends server-sent events.

    The answer's citations, grounding and timings are in the extra ``rag`` field.
    """
    name = body.index or (None if body.model == oa.DEFAULT_MODEL else body.model)
    name, rag = await state.open_index(name)
    question, history, query = body.question_and_history()
    max_tokens, temperature = body.max_completion_tokens or body.max_tokens, body.temperature
    if not body.stream:
        answer = await run_in_threadpool(
            lambda: rag.ask(
                question,
                body.k,
                history=history,
                retrieval_query=query,
                max_tokens=max_tokens,
                temperature=temperature,
            )
        )
        state.metrics.observe_answer(answer)
        return oa.completion(answer, body.model, name)
    stream = await run_in_threadpool(
        lambda: rag.stream(
            question,
            body.k,
            history=history,
            retrieval_query=query,
            max_tokens=max_tokens,
            temperature=temperature,
        )
    )
    return StreamingResponse(
        _events(state, rag, name, body, stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    state: ServerState, rag: RAG, name: str, body: oa.ChatCompletionRequest, stream: AnswerStream
) -> AsyncIterator[str]:
    """The server-sent events of a streamed answer: role, text pieces, the last chunk with ``rag``."""
    cid = oa.completion_id()
    yield oa.chunk(cid, body.model, {"role": "assistant", "content": ""})
    pieces: list[str] = []
    try:
        async for piece in iterate_in_thread(lambda: iter(stream)):
            pieces.append(piece)
            yield oa.chunk(cid, body.model, {"content": piece})
    except errors.RagAppError as exc:  # headers are sent: the error goes in the stream
        LOG.error("stream failed: %s", exc)
        yield oa.sse(error_body(status_of(exc), kind_of(exc), state.public(str(exc)), None))
        yield oa.DONE
        return
    answer = stream.answer
    assert answer is not None
    state.metrics.observe_answer(answer)
    yield oa.chunk(cid, body.model, {}, "stop", rag=oa.rag_extra(answer, name))
    if body.stream_options and body.stream_options.include_usage:
        count = await run_in_threadpool(rag.generator.count_tokens, "".join(pieces))
        yield oa.sse(
            {
                "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.model, "choices": [], "usage": oa.usage(answer, count),
            }
        )  # fmt: skip
    yield oa.DONE
