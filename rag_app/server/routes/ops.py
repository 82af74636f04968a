"""Operations: liveness (``/health``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from rag_app.server.auth import READ, AuthFirstRoute
from rag_app.server.contract import AUTH, documented
from rag_app.server.state import State, version

router = APIRouter(route_class=AuthFirstRoute)


@router.get("/health", tags=["ops"])
async def health(state: State) -> dict[str, Any]:
    """Liveness: the process answers and the indexes folder is readable (no model is loaded)."""
    names = await run_in_threadpool(state.indexes.names)
    return {"status": "ok", "version": version(), "indexes": len(names)}


async def prometheus(state: State) -> Response:
    """Prometheus: requests and latency by route, tokens, retrieval and generation time, guard flags."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def metrics_router(public: bool) -> APIRouter:
    """``/metrics``, open to anyone when ``public`` (``server.public_metrics``), else behind a read key."""
    metrics = APIRouter(route_class=AuthFirstRoute)
    metrics.add_api_route(
        "/metrics",
        prometheus,
        methods=["GET"],
        tags=["ops"],
        response_class=Response,
        dependencies=() if public else READ,
        responses={} if public else documented(*AUTH),
    )
    return metrics
