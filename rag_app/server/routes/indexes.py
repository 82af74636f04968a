"""The indexes and their documents: list them, ingest (uploads or server paths), delete a document."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StrictBool, ValidationError
from starlette.concurrency import run_in_threadpool

from rag_app.ingest import IngestReport, source_name
from rag_app.rag import RAG
from rag_app.server.auth import ADMIN, READ, AuthFirstRoute
from rag_app.server.contract import AUTH, INDEX_NAME_PATTERN, ApiError, IndexName, describe, documented
from rag_app.server.state import State
from rag_app.server.uploads import UPLOAD_ROUTE, read_form, save_uploads

DOC_ID_MAX = 2**63 - 1
"""The largest document id (SQLite's INTEGER); a larger one in a path is refused with 422."""

router = APIRouter(route_class=AuthFirstRoute)


class IngestPathsRequest(BaseModel):
    """``POST /ingest`` with JSON: files and folders on the server, under ``server.ingest_roots``."""

    index: IndexName | None = None
    paths: list[Annotated[str, Field(pattern="^[^\\x00]*$")]] = Field(min_length=1, max_length=1000)
    prune: StrictBool = False


class NotIngested(BaseModel):
    """A file the ingest failed or left out."""

    path: str = Field(description="The file: its upload name, or its path relative to an ingest root.")
    error: str = Field(description="Why it was not ingested.")


class IngestAnswer(BaseModel):
    """What ``POST /ingest`` did: :class:`rag_app.ingest.IngestReport`, naming no server folder."""

    index: str = Field(description="The index written.")
    files: list[str] = Field(
        description="The uploaded file names, or the paths sent (JSON), relative to their ingest root."
    )
    files_seen: int = Field(description="Files found (folders walked).")
    files_ingested: int = Field(description="Files new or changed, now indexed.")
    files_unchanged: int = Field(description="Files indexed already with the same content.")
    files_failed: list[NotIngested] = Field(description="Files that could not be loaded (uploads not kept).")
    files_skipped: list[NotIngested] = Field(
        description="Files left out (too large, not found; uploads not kept)."
    )
    files_removed: int = Field(description="Documents removed because their files are gone (`prune`).")
    chunks_added: int
    chunks_removed: int
    chunks_embedded: int = Field(description="Chunks embedded now (the rest came from the embedding cache).")
    chunks_reused: int
    bytes_ingested: int
    seconds: float
    pii_redacted: dict[str, int] = Field(description="With `index.redact_pii`: redactions by type.")


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


@router.get("/indexes", tags=["indexes"], dependencies=READ, responses=documented(*AUTH, 409, 503))
async def list_indexes(state: State) -> dict[str, Any]:
    """The served indexes with their counts and build settings."""

    def collect() -> list[dict[str, Any]]:
        rows = []
        for name in state.indexes.names():
            stats = state.indexes.get(name).stats()
            stats.pop("index", None)  # the server's folder path
            rows.append({"name": name, **stats})
        return rows

    return {"indexes": await run_in_threadpool(collect), "default": state.settings.default_index}


@router.get(
    "/indexes/{name}/documents",
    tags=["indexes"],
    dependencies=READ,
    responses=documented(*AUTH, 400, 404, 409, 503),
)
async def list_documents(state: State, name: str = PathParam(pattern=INDEX_NAME_PATTERN)) -> dict[str, Any]:
    """The documents of an index (``id`` is what ``DELETE /documents/{id}`` takes)."""
    name, rag = await state.open_index(name)
    rows = await run_in_threadpool(rag.documents)
    return {
        "index": name,
        "documents": [
            {"id": r.id, "source": r.source, "format": r.format, "size": r.size, "chunks": r.n_chunks,
             "ingested_at": r.ingested_at}
            for r in rows
        ],
    }  # fmt: skip


@router.post(
    UPLOAD_ROUTE,
    tags=["indexes"],
    dependencies=ADMIN,
    openapi_extra=_INGEST_BODY,
    response_model=IngestAnswer,
    responses=documented(*AUTH, 400, 403, 404, 409, 413, 415, 422, 500, 503),
)
async def ingest(request: Request, state: State) -> dict[str, Any]:
    """Add documents: upload files (multipart ``files`` and ``index``), or name server paths (JSON).

    Uploads are checked by extension and content and kept under ``server.uploads_dir`` (the
    documents' sources: uploading the same file name again updates it). Server paths must lie
    under ``server.ingest_roots``, symlinks included. While another writer holds the index (a
    CLI ingest, another request), the request waits for it in a worker thread, up to
    ``server.ingest_wait_s``, and then answers 409 ``index_locked``. The answer names uploads by
    their file names and server paths relative to their ingest root.
    """  # the OpenAPI description; uploads the ingest refuses are not kept (rag_app.server.uploads)
    ctype = request.headers.get("content-type", "")
    wait = state.settings.ingest_wait_s
    if ctype.startswith("multipart/form-data"):
        index, uploads = await read_form(request)
        name = state.indexes.resolve(index)
        if not uploads:
            raise ApiError(400, "no_files", "send one or more files in the multipart field `files`")
        _, rag = await state.open_index(name, create=True)
        saved = await run_in_threadpool(save_uploads, uploads, state.uploads_dir / name, rag.ingest_formats)
        sent = {source_name(p): p.name for p in saved.paths}  # where each upload lies -> its name
        try:  # another writer (a CLI ingest, another request): wait for it in this worker thread
            report = await run_in_threadpool(lambda: rag.ingest(saved.paths, wait=wait))
        except Exception:  # the ingest failed (locked, mismatched, ...): the uploads are not kept
            await run_in_threadpool(saved.undo)
            raise
        await run_in_threadpool(saved.settle, report)
        return _client_report(report, name, list(sent.values()), _uploads_shown(sent, state.public))
    if ctype.startswith("application/json"):
        try:
            spec = IngestPathsRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
            raise ApiError(422, "invalid_request", describe(exc.errors())) from None
        name, rag = await state.open_index(spec.index, create=True)
        paths = await run_in_threadpool(allowed_paths, spec.paths, state.settings.ingest_roots, rag)
        report = await run_in_threadpool(lambda: rag.ingest(paths, prune=spec.prune, wait=wait))
        return _client_report(report, name, [state.public(p) for p in spec.paths], state.public)
    raise ApiError(
        415, "unsupported_media_type", "send multipart/form-data (files) or application/json (paths)"
    )


def _client_report(
    report: IngestReport, index: str, files: list[str], shown: Callable[[str], str]
) -> dict[str, Any]:
    """The :class:`IngestAnswer` of ``report``: the index by name, ``files`` as the client sent
    them, and each failed or skipped file's path and reason passed through ``shown``."""
    body = {**report.to_dict(), "index": index, "files": files}
    for key in ("files_failed", "files_skipped"):
        body[key] = [{"path": shown(f["path"]), "error": shown(f["error"])} for f in body[key]]
    return body


def _uploads_shown(sent: dict[str, str], public: Callable[[str], str]) -> Callable[[str], str]:
    """Text with each saved upload's path (``sent``'s keys) as its file name, other paths made public."""

    def shown(text: str) -> str:
        for path in sorted(sent, key=len, reverse=True):
            text = text.replace(path, sent[path])
        return public(text)

    return shown


@router.delete(
    "/documents/{doc_id}",
    tags=["indexes"],
    dependencies=ADMIN,
    responses=documented(*AUTH, 400, 403, 404, 409, 422, 503),
)
async def delete_document(
    state: State,
    doc_id: int = PathParam(ge=1, le=DOC_ID_MAX, description="From GET /indexes/{name}/documents."),
    index: str | None = Query(None, pattern=INDEX_NAME_PATTERN),
) -> dict[str, Any]:
    """Remove a document (``id`` from ``GET /indexes/{name}/documents``) and its chunks."""
    name, rag = await state.open_index(index)

    def remove() -> dict[str, Any]:
        row = rag.document(doc_id)
        if row is None:
            raise ApiError(404, "document_not_found", f"no document with id {doc_id} in index {name!r}")
        removed = rag.delete([row.source], wait=state.settings.ingest_wait_s)
        upload = Path(row.source)
        if upload.is_relative_to(state.uploads_dir.resolve() / name):
            upload.unlink(missing_ok=True)  # an uploaded copy would otherwise come back on re-ingest
        return {"index": name, "id": doc_id, "source": row.source, "chunks_removed": removed}

    return await run_in_threadpool(remove)


def allowed_paths(raw_paths: list[str], roots: list[Path], rag: RAG) -> list[Path]:
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
