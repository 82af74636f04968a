"""The FastAPI app: every route is a thin call into :class:`rag_app.RAG`, run in a worker thread.

    from rag_app.server.app import create_app
    app = create_app(Settings.load())       # uvicorn serves it: `rag-app serve`

Errors come back as ``{"error": {"message", "type", "code", "request_id"}}`` (the OpenAI shape,
so OpenAI clients show the message), with the status from :data:`STATUS`.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, StrictBool, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_app import errors
from rag_app.embeddings.base import Embedder
from rag_app.generation.base import Generator
from rag_app.ingest import source_name
from rag_app.rag import RAG
from rag_app.search_options import MAX_K, RetrievalMode
from rag_app.server import openai_compat as oa
from rag_app.server.auth import Authenticator, AuthFirstRoute
from rag_app.server.contract import (
    AUTH,
    INDEX_NAME_PATTERN,
    NOT_BLANK,
    ApiError,
    IndexName,
    PublicPaths,
    documented,
    error_body,
)
from rag_app.server.keys import KeyStore
from rag_app.server.limits import BodySizeLimit
from rag_app.server.observability import LOG, Metrics
from rag_app.server.runtime import Indexes, iterate_in_thread
from rag_app.settings import Settings

STATUS: dict[type[errors.RagAppError], int] = {
    errors.QueryError: 400,
    errors.ConfigError: 400,
    errors.IndexNotFoundError: 404,
    errors.IndexMismatchError: 409,
    errors.IndexLockedError: 409,
    errors.UnsupportedFormatError: 415,
    errors.DocumentError: 422,
    errors.IngestError: 422,
    errors.GeneratorError: 502,
    errors.ModelNotFoundError: 500,
}
"""HTTP status of each error class (the first match along the class's ancestry; else 500)."""

_ZIP_FORMATS = {".docx", ".pptx", ".xlsx", ".odt", ".epub"}
DOC_ID_MAX = 2**63 - 1
"""The largest document id (SQLite's INTEGER); a larger one in a path is refused with 422."""


def _status_of(exc: errors.RagAppError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_").removesuffix("_error")


# -- request and response bodies ---------------------------------------------------------------
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


class IngestPathsRequest(BaseModel):
    """``POST /ingest`` with JSON: files and folders on the server, under ``server.ingest_roots``."""

    index: IndexName | None = None
    paths: list[Annotated[str, Field(pattern="^[^\\x00]*$")]] = Field(min_length=1, max_length=1000)
    prune: StrictBool = False


_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "string", "pattern": INDEX_NAME_PATTERN},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                        },
                    },
                    "required": ["files"],
                }
            },
            "application/json": {"schema": IngestPathsRequest.model_json_schema()},
        },
    }
}


# -- the app -----------------------------------------------------------------------------------
def create_app(
    settings: Settings, *, embedder: Embedder | None = None, generator: Generator | None = None
) -> FastAPI:
    """The REST API over the indexes in ``server.indexes_dir``; models are shared by all indexes.

    ``embedder`` and ``generator`` replace the configured ones (tests, or an app that has them).
    """
    s = settings.server
    data = settings.data_dir
    indexes_dir = s.indexes_dir or data / "indexes"
    uploads_dir = s.uploads_dir or data / "uploads"
    metrics = Metrics()
    keys = KeyStore(s.api_keys_file or data / "api-keys.json")
    auth = Authenticator(s, keys, metrics)
    public = PublicPaths([*s.ingest_roots, uploads_dir, indexes_dir])
    indexes = Indexes(
        settings, indexes_dir, embedder=embedder, generator=generator, on_tokens=metrics.tokens.inc
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not s.require_api_key:
            LOG.warning("server.require_api_key is off: every request is treated as admin")
        elif not keys.list_keys():
            LOG.warning(
                "no API keys in %s: create one with `rag-app serve keys add --scope admin`", keys.path
            )
        LOG.info("serving indexes", extra={"indexes_dir": str(indexes_dir), "indexes": indexes.names()})
        yield
        indexes.close()

    app = FastAPI(
        title="rag-app",
        version=_version(),
        summary="Retrieval-augmented answers over your documents, with citations and a grounding check.",
        lifespan=lifespan,
    )
    app.router.route_class = AuthFirstRoute  # the key is checked before the body is read
    app.state.indexes = indexes
    app.state.metrics = metrics

    # -- errors --------------------------------------------------------------------------------
    def _json_error(
        request: Request, status: int, kind: str, message: str, headers: Any = None
    ) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        shown = public(message)
        if shown != message:  # the client sees paths relative to the roots it knows; the log, all
            LOG.info(
                "error with server paths", extra={"request_id": rid, "status": status, "detail": message}
            )
        return JSONResponse(error_body(status, kind, shown, rid), status_code=status, headers=headers)

    @app.exception_handler(errors.RagAppError)
    async def _rag_error(request: Request, exc: errors.RagAppError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            LOG.error(
                "request failed: %s", exc, extra={"request_id": getattr(request.state, "request_id", None)}
            )
        return _json_error(request, status, _snake(type(exc).__name__), str(exc))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json_error(request, exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http"
        )
        return _json_error(request, exc.status_code, kind, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = list(exc.errors())
        if any(p.get("type") == "json_invalid" for p in problems):
            detail = next(p for p in problems if p.get("type") == "json_invalid")
            where = detail.get("ctx", {}).get("error", "")
            return _json_error(request, 400, "invalid_json", f"the request body is not valid JSON: {where}")
        return _json_error(request, 422, "invalid_request", _describe(problems))

    read = [Depends(auth.require("read"))]
    admin = [Depends(auth.require("admin"))]

    async def _rag(name: str | None, *, create: bool = False) -> tuple[str, RAG]:
        resolved = indexes.resolve(name)
        return resolved, await run_in_threadpool(lambda: indexes.get(resolved, create=create))

    # -- routes ----------------------------------------------------------------------------------
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        """Liveness: the process answers and the indexes folder is readable (no model is loaded)."""
        names = await run_in_threadpool(indexes.names)
        return {"status": "ok", "version": _version(), "indexes": len(names)}

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        dependencies=[] if s.public_metrics else read,
        responses={} if s.public_metrics else documented(*AUTH),
    )
    async def prometheus() -> Response:
        """Prometheus: requests and latency by route, tokens, retrieval and generation time, guard flags."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["openai"], dependencies=read, responses=documented(*AUTH))
    async def list_models() -> dict[str, Any]:
        """OpenAI-compatible: each index is a model; ``rag-app`` is the default index when one is set."""
        names = await run_in_threadpool(indexes.names)
        if s.default_index:
            names = [oa.DEFAULT_MODEL, *names]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "rag-app"} for n in names],
        }

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        dependencies=read,
        response_model=None,
        responses=documented(*AUTH, 400, 404, 409, 413, 422, 500, 502),
    )
    async def chat_completions(body: oa.ChatCompletionRequest) -> dict[str, Any] | StreamingResponse:
        """OpenAI-compatible chat over an index (``model`` or ``index``); ``stream`` sends server-sent events.

        The answer's citations, grounding and timings are in the extra ``rag`` field.
        """
        name = body.index or (None if body.model == oa.DEFAULT_MODEL else body.model)
        name, rag = await _rag(name)
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
            metrics.observe_answer(answer)
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
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            cid = oa.completion_id()
            yield oa.chunk(cid, body.model, {"role": "assistant", "content": ""})
            pieces: list[str] = []
            try:
                async for piece in iterate_in_thread(lambda: iter(stream)):
                    pieces.append(piece)
                    yield oa.chunk(cid, body.model, {"content": piece})
            except errors.RagAppError as exc:  # headers are sent: the error goes in the stream
                LOG.error("stream failed: %s", exc)
                yield oa.sse(error_body(_status_of(exc), _snake(type(exc).__name__), public(str(exc)), None))
                yield oa.DONE
                return
            answer = stream.answer
            assert answer is not None
            metrics.observe_answer(answer)
            yield oa.chunk(cid, body.model, {}, "stop", rag=oa.rag_extra(answer, name))
            if include_usage:
                count = await run_in_threadpool(rag.generator.count_tokens, "".join(pieces))
                yield oa.sse(
                    {
                        "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": body.model, "choices": [], "usage": oa.usage(answer, count),
                    }
                )  # fmt: skip
            yield oa.DONE

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/indexes", tags=["indexes"], dependencies=read, responses=documented(*AUTH, 409))
    async def list_indexes() -> dict[str, Any]:
        """The served indexes with their counts and build settings."""

        def collect() -> list[dict[str, Any]]:
            rows = []
            for name in indexes.names():
                stats = indexes.get(name).stats()
                stats.pop("index", None)  # the server's folder path
                rows.append({"name": name, **stats})
            return rows

        return {"indexes": await run_in_threadpool(collect), "default": s.default_index}

    @app.get(
        "/indexes/{name}/documents",
        tags=["indexes"],
        dependencies=read,
        responses=documented(*AUTH, 400, 404, 409),
    )
    async def list_documents(name: str = PathParam(pattern=INDEX_NAME_PATTERN)) -> dict[str, Any]:
        """The documents of an index (``id`` is what ``DELETE /documents/{id}`` takes)."""
        name, rag = await _rag(name)
        rows = await run_in_threadpool(rag.documents)
        return {
            "index": name,
            "documents": [
                {"id": r.id, "source": r.source, "format": r.format, "size": r.size, "chunks": r.n_chunks,
                 "ingested_at": r.ingested_at}
                for r in rows
            ],
        }  # fmt: skip

    @app.post(
        "/search", tags=["rag"], dependencies=read, responses=documented(*AUTH, 400, 404, 409, 413, 422)
    )
    async def search(body: SearchRequest) -> dict[str, Any]:
        """The passages that best match ``query`` (hybrid dense + BM25 by default)."""
        name, rag = await _rag(body.index)
        t0 = time.perf_counter()
        hits = await run_in_threadpool(
            lambda: rag.search(
                body.query, body.k, source=body.source, formats=body.formats, mode=body.mode, mmr=body.mmr
            )
        )
        seconds = time.perf_counter() - t0
        metrics.retrieval.observe(seconds)
        return {"index": name, "hits": [h.to_dict() for h in hits], "seconds": round(seconds, 6)}

    @app.post(
        "/ask",
        tags=["rag"],
        dependencies=read,
        responses=documented(*AUTH, 400, 404, 409, 413, 422, 500, 502),
    )
    async def ask(body: AskRequest) -> dict[str, Any]:
        """A grounded answer with numbered citations, or an abstention (the ``Answer`` as JSON)."""
        name, rag = await _rag(body.index)
        answer = await run_in_threadpool(
            lambda: rag.ask(body.question, body.k, source=body.source, formats=body.formats)
        )
        metrics.observe_answer(answer)
        return {"index": name, **answer.to_dict()}

    @app.post(
        "/ingest",
        tags=["indexes"],
        dependencies=admin,
        openapi_extra=_INGEST_BODY,
        responses=documented(*AUTH, 400, 403, 404, 409, 413, 415, 422, 500),
    )
    async def ingest(request: Request) -> dict[str, Any]:
        """Add documents: upload files (multipart ``files`` and ``index``), or name server paths (JSON).

        Uploads are checked by extension and content and kept under ``server.uploads_dir`` (the
        documents' sources: uploading the same file name again updates it). Server paths must lie
        under ``server.ingest_roots``, symlinks included. While another writer holds the index (a
        CLI ingest, another request), the request waits for it in a worker thread, up to
        ``server.ingest_wait_s``, and then answers 409 ``index_locked``.
        """
        ctype = request.headers.get("content-type", "")
        prune = False
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1000, max_fields=20)
            index_field = form.get("index")
            name = indexes.resolve(index_field if isinstance(index_field, str) else None)
            uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if not uploads:
                raise ApiError(400, "no_files", "send one or more files in the multipart field `files`")
            _, rag = await _rag(name, create=True)
            paths = await run_in_threadpool(_save_uploads, uploads, uploads_dir / name, rag.ingest_formats)
        elif ctype.startswith("application/json"):
            try:
                spec = IngestPathsRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                if any(e["type"] == "json_invalid" for e in exc.errors()):
                    raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
                raise ApiError(422, "invalid_request", _describe(exc.errors())) from None
            name, rag = await _rag(spec.index, create=True)
            paths = await run_in_threadpool(_allowed_paths, spec.paths, s.ingest_roots, rag)
            prune = spec.prune
        else:
            raise ApiError(
                415, "unsupported_media_type", "send multipart/form-data (files) or application/json (paths)"
            )
        # another writer (a CLI ingest, another request): wait for it in this worker thread (queued)
        report = await run_in_threadpool(lambda: rag.ingest(paths, prune=prune, wait=s.ingest_wait_s))
        return {**report.to_dict(), "index": name}

    @app.delete(
        "/documents/{doc_id}",
        tags=["indexes"],
        dependencies=admin,
        responses=documented(*AUTH, 400, 403, 404, 409, 422),
    )
    async def delete_document(
        doc_id: int = PathParam(ge=1, le=DOC_ID_MAX, description="From GET /indexes/{name}/documents."),
        index: str | None = Query(None, pattern=INDEX_NAME_PATTERN),
    ) -> dict[str, Any]:
        """Remove a document (``id`` from ``GET /indexes/{name}/documents``) and its chunks."""
        name, rag = await _rag(index)

        def remove() -> dict[str, Any]:
            row = rag.document(doc_id)
            if row is None:
                raise ApiError(404, "document_not_found", f"no document with id {doc_id} in index {name!r}")
            removed = rag.delete([row.source], wait=s.ingest_wait_s)
            upload = Path(row.source)
            if upload.is_relative_to(uploads_dir.resolve() / name):
                upload.unlink(missing_ok=True)  # an uploaded copy would otherwise come back on re-ingest
            return {"index": name, "id": doc_id, "source": row.source, "chunks_removed": removed}

        return await run_in_threadpool(remove)

    app.add_middleware(BodySizeLimit, limit_for=_limits(s.max_body_kb * 1024, int(s.max_upload_mb * 2**20)))
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext, metrics=metrics)
    return app


# -- helpers -----------------------------------------------------------------------------------
def _version() -> str:
    try:
        return importlib.metadata.version("rag-app")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _describe(problems: Any) -> str:
    parts = []
    for p in problems:
        loc = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {p.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def _limits(json_bytes: int, upload_bytes: int) -> Callable[[str], int]:
    return lambda path: upload_bytes if path == "/ingest" else json_bytes


def _upload_name(raw: str | None) -> str:
    """The file name of an upload, without any folder part; refuses hidden and odd names."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    if not name or name.startswith(".") or "\x00" in name or len(name) > 200:
        raise ApiError(400, "bad_file_name", f"unusable upload file name {raw!r}")
    return name


def _check_upload(name: str, head: bytes, extensions: frozenset[str]) -> None:
    """The extension is one we load, and the first bytes match it (no executable renamed to .pdf)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in extensions:
        allowed = " ".join(sorted(extensions))
        raise ApiError(
            415, "unsupported_file_type", f"{name}: file type {suffix or '(none)'} is not one of {allowed}"
        )
    if suffix == ".pdf":
        ok = head.startswith(b"%PDF-")
    elif suffix in _ZIP_FORMATS:
        ok = head.startswith(b"PK\x03\x04")
    else:  # text formats: no NUL bytes (UTF-16 text with a BOM is allowed)
        ok = b"\x00" not in head or head[:2] in (b"\xff\xfe", b"\xfe\xff")
    if not ok:
        raise ApiError(
            415, "unsupported_file_type", f"{name}: the content does not look like a {suffix} file"
        )


def _save_uploads(uploads: list[UploadFile], folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Check every upload first, then write each atomically into ``folder``."""
    named = []
    for upload in uploads:
        name = _upload_name(upload.filename)
        upload.file.seek(0)
        _check_upload(name, upload.file.read(4096), extensions)
        upload.file.seek(0)
        named.append((name, upload))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, upload in named:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while block := upload.file.read(1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            target = folder / name
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(target.resolve())
    return paths


def _allowed_paths(raw_paths: list[str], roots: list[Path], rag: RAG) -> list[Path]:
    """The paths, resolved, when each (and every file found under it, through symlinks) is inside a root."""
    if not roots:
        raise ApiError(
            403, "ingest_by_path_disabled", "ingest by server path is off: set server.ingest_roots"
        )
    resolved_roots = [r.expanduser().resolve() for r in roots]

    def inside(path: Path) -> bool:
        return any(path == r or path.is_relative_to(r) for r in resolved_roots)

    paths = []
    for raw in raw_paths:
        if "\x00" in raw:
            raise ApiError(400, "bad_path", "a path holds a NUL character")
        given = Path(raw).expanduser()
        path = (given if given.is_absolute() else resolved_roots[0] / given).resolve()
        if not inside(path):
            raise ApiError(403, "path_not_allowed", f"{raw} is outside the allowed ingest roots")
        paths.append(path)
    escaped = [source_name(f) for f in rag.ingest_files(paths) if not inside(f.resolve())]
    if escaped:
        raise ApiError(
            403, "path_not_allowed", "links lead outside the allowed ingest roots: " + ", ".join(escaped[:5])
        )
    return paths


class RequestContext:
    """Outermost middleware: a request id (``X-Request-ID``), one JSON log line and metrics per request.

    Latency runs to the end of the response body (a whole stream). Unexpected errors become a 500
    JSON body with the request id, and are logged with their traceback.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            LOG.exception("unhandled error", extra={"request_id": rid})
            if not started:
                response = JSONResponse(
                    error_body(500, "internal", "internal server error", rid), status_code=500
                )
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(route=template, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=template, method=method).observe(seconds)
            state = scope.get("state", {})
            LOG.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": method,
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "key_id": state.get("key_id"),
                    "client": (scope.get("client") or ("?",))[0],
                },
            )
