"""What error answers look like: the JSON body, the statuses each route documents, paths kept private.

Every error is ``{"error": {"message", "type", "code", "request_id"}}`` (the OpenAI shape). Each
route lists the statuses it can answer (:func:`documented`), so the OpenAPI schema is a contract
a client (or schemathesis, in the tests) can hold the server to. Messages never show where things
lie on the server: :class:`PublicPaths` makes paths relative to a root the client knows (an ingest
root, the uploads or indexes folder) and hides any other absolute path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from rag_app import errors
from rag_app.server.runtime import INDEX_NAME

INDEX_NAME_PATTERN = f"^{INDEX_NAME.pattern}$"
"""What an index name may be, in the schema: a request naming another is refused with 422."""
IndexName = Annotated[str, Field(pattern=INDEX_NAME_PATTERN, description="An index (GET /indexes).")]
NOT_BLANK = r"[^\s\x1c-\x1f]"
"""Holds one character that is not blank (Python's ``str.strip`` also strips U+001C..U+001F)."""


class ApiError(Exception):
    """An HTTP answer decided at the edge (auth, limits, request shape), not by the library."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to change, in one sentence.")
    type: str = Field(description="A stable, snake_case name of the error (`invalid_api_key`, ...).")
    code: int = Field(description="The HTTP status.")
    request_id: str | None = Field(description="The `X-Request-ID` of the request (in the server's logs).")


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


def error_body(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status, "request_id": request_id}}


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
    errors.StoreUnavailableError: 503,
    errors.ModelNotFoundError: 500,
}
"""HTTP status of each error class (the first match along the class's ancestry; else 500)."""


def status_of(exc: errors.RagAppError) -> int:
    """The HTTP status a library error answers with (:data:`STATUS`)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def kind_of(exc: errors.RagAppError) -> str:
    """The ``type`` of a library error's body: its class name in snake case (``index_locked``)."""
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_").removesuffix("_error")


def describe(problems: Any) -> str:
    """One line naming each validation problem (pydantic's ``errors()``) by where it is."""
    parts = []
    for p in problems:
        loc = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {p.get('msg')}")
    return "invalid request: " + "; ".join(parts)


_WHY = {
    400: "A request that cannot be answered as given (invalid JSON, a bad index name, an empty question).",
    401: "No API key, or one that is not valid.",
    403: "The key's scope does not allow this, or a path outside `server.ingest_roots`.",
    404: "No such index or document.",
    409: "The index is being written by another process, or was built with another model.",
    413: "The request body is larger than the server's limit.",
    415: "An unsupported content type or file type.",
    422: "The body or a parameter does not match the schema.",
    429: "Too many requests, or too many failed authentications from this address; see `Retry-After`.",
    500: "A model could not be loaded, or an unexpected error (logged with the request id).",
    502: "The generator's server failed or answered badly.",
    503: "The index's vector store (a Milvus server) cannot be reached; the index is unchanged.",
}

AUTH = (401, 429)
"""What every route behind an API key can answer."""


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in sorted(set(statuses))}


# a path of two or more segments that starts a word: /srv/x, not multipart/form-data or GET /indexes
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[^\s/'\",;:()\[\]{}<>]+(?:/[^\s/'\",;:()\[\]{}<>]*)+")
HIDDEN = "<server path>"


class PublicPaths:
    """Rewrites a message for a client: paths under a known root become relative, others hidden.

    ``roots`` are folders the client may know by their contents (paths it names relative to an
    ingest root, index names under the indexes folder); the longest match wins.
    """

    def __init__(self, roots: Iterable[Path]) -> None:
        prefixes: set[str] = set()
        for root in roots:
            for form in (root.expanduser(), root.expanduser().resolve()):
                if form.is_absolute() and str(form) != "/":
                    prefixes.add(str(form).rstrip("/"))
        self._prefixes = sorted(prefixes, key=len, reverse=True)

    def __call__(self, message: str) -> str:
        def public(match: re.Match[str]) -> str:
            path = match.group(0)
            for prefix in self._prefixes:
                if path == prefix:
                    return "."
                if path.startswith(prefix + "/"):
                    return path[len(prefix) + 1 :]
            return HIDDEN

        return _ABSOLUTE.sub(public, message)
