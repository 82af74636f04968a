"""Retrieval and answers: ``/search`` (the best passages) and ``/ask`` (a grounded, cited answer)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from rag_app.search_options import MAX_K, RetrievalMode
from rag_app.server.auth import READ, AuthFirstRoute
from rag_app.server.contract import AUTH, NOT_BLANK, IndexName, documented
from rag_app.server.state import State

router = APIRouter(route_class=AuthFirstRoute)


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=8000, pattern=NOT_BLANK)
    index: IndexName | None = Field(
        None, description="Index name (GET /indexes); unset: server.default_index."
    )
    k: int | None = Field(None, ge=1, le=MAX_K)
    mode: RetrievalMode | None = None
    source: str | None = Field(None, description="Only files whose path matches this glob.")
    formats: list[str] = Field(default_factory=list, description="Only these formats (pdf, html, ...).")
    mmr: StrictBool | None = Field(None, description="Diversify the hits (maximal marginal relevance).")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=8000, pattern=NOT_BLANK)
    index: IndexName | None = None
    k: int | None = Field(None, ge=1, le=MAX_K)
    source: str | None = None
    formats: list[str] = Field(default_factory=list)


@router.post(
    "/search", tags=["rag"], dependencies=READ, responses=documented(*AUTH, 400, 404, 409, 413, 422, 503)
)
async def search(body: SearchRequest, state: State) -> dict[str, Any]:
    """The passages that best match ``query`` (hybrid dense + BM25 by default)."""
    name, rag = await state.open_index(body.index)
    t0 = time.perf_counter()
    hits = await run_in_threadpool(
        lambda: rag.search(
            body.query, body.k, source=body.source, formats=body.formats, mode=body.mode, mmr=body.mmr
        )
    )
    seconds = time.perf_counter() - t0
    state.metrics.retrieval.observe(seconds)
    return {"index": name, "hits": [h.to_dict() for h in hits], "seconds": round(seconds, 6)}


@router.post(
    "/ask",
    tags=["rag"],
    dependencies=READ,
    responses=documented(*AUTH, 400, 404, 409, 413, 422, 500, 502, 503),
)
async def ask(body: AskRequest, state: State) -> dict[str, Any]:
    """A grounded answer with numbered citations, or an abstention (the ``Answer`` as JSON)."""
    name, rag = await state.open_index(body.index)
    answer = await run_in_threadpool(
        lambda: rag.ask(body.question, body.k, source=body.source, formats=body.formats)
    )
    state.metrics.observe_answer(answer)
    return {"index": name, **answer.to_dict()}
