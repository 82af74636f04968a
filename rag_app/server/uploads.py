"""Uploaded files: the form's limits, names and content checked, each written atomically, undone if refused.

    index, files = await read_form(request)
    saved = save_uploads(files, uploads_dir / index, rag.ingest_formats)   # in a worker thread
    try:
        report = rag.ingest(saved.paths)
    except Exception:
        saved.undo()
        raise
    saved.settle(report)

Uploads are kept under ``server.uploads_dir/<index>/`` as the documents' sources (uploading the
same name again updates the file). One that the ingest refuses (a file it could not load, or the
whole batch when the ingest fails) does not stay there: a new file is removed, a replaced one comes
back as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from starlette.datastructures import UploadFile
from starlette.requests import Request

from rag_app.ingest import IngestReport, source_name
from rag_app.server.contract import ApiError
from rag_app.settings import ServerSettings

UPLOAD_ROUTE = "/ingest"
"""The one route that takes uploads (it gets the larger body limit, ``server.max_upload_mb``)."""
MAX_FILES = 1000
MAX_FIELDS = 20
ZIP_FORMATS = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".epub"})


def upload_limit(settings: ServerSettings) -> int:
    """The body limit of :data:`UPLOAD_ROUTE`, in bytes."""
    return int(settings.max_upload_mb * 2**20)


async def read_form(request: Request) -> tuple[str | None, list[UploadFile]]:
    """The multipart ``index`` field (``None`` when not sent) and the ``files`` sent (maybe none)."""
    form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    index = form.get("index")
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    return (index if isinstance(index, str) else None), files


def upload_name(raw: str | None) -> str:
    """The file name of an upload, without any folder part; refuses hidden and odd names."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    if not name or name.startswith(".") or "\x00" in name or len(name) > 200:
        raise ApiError(400, "bad_file_name", f"unusable upload file name {raw!r}")
    return name


def check_upload(name: str, head: bytes, extensions: frozenset[str]) -> None:
    """The extension is one we load, and the first bytes match it (no executable renamed to .pdf)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in extensions:
        allowed = " ".join(sorted(extensions))
        raise ApiError(
            415, "unsupported_file_type", f"{name}: file type {suffix or '(none)'} is not one of {allowed}"
        )
    if suffix == ".pdf":
        ok = head.startswith(b"%PDF-")
    elif suffix in ZIP_FORMATS:
        ok = head.startswith(b"PK\x03\x04")
    else:  # text formats: no NUL bytes (UTF-16 text with a BOM is allowed)
        ok = b"\x00" not in head or head[:2] in (b"\xff\xfe", b"\xfe\xff")
    if not ok:
        raise ApiError(
            415, "unsupported_file_type", f"{name}: the content does not look like a {suffix} file"
        )


@dataclass
class SavedUploads:
    """Uploads written into their folder, with a hidden copy of each file they replaced until settled."""

    paths: list[Path] = field(default_factory=list)
    replaced: dict[Path, Path] = field(default_factory=dict)
    """Each saved path that replaced a file -> the hidden copy of that file."""

    def settle(self, report: IngestReport) -> None:
        """Keep what the ingest took; undo each upload it failed or skipped."""
        refused = {item["path"] for item in [*report.files_failed, *report.files_skipped]}
        for path in self.paths:
            self._undo(path) if source_name(path) in refused else self._keep(path)
        self.paths, self.replaced = [], {}

    def undo(self) -> None:
        """Undo every upload: a new file is removed, a replaced one restored (the ingest failed)."""
        for path in self.paths:
            self._undo(path)
        self.paths, self.replaced = [], {}

    def _undo(self, path: Path) -> None:
        previous = self.replaced.get(path)
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(previous, path)

    def _keep(self, path: Path) -> None:
        previous = self.replaced.get(path)
        if previous is not None:
            previous.unlink(missing_ok=True)


def save_uploads(uploads: list[UploadFile], folder: Path, extensions: frozenset[str]) -> SavedUploads:
    """Check every upload first, then write each atomically into ``folder`` (all undone on an error)."""
    named = []
    for upload in uploads:
        name = upload_name(upload.filename)
        upload.file.seek(0)
        check_upload(name, upload.file.read(4096), extensions)
        upload.file.seek(0)
        named.append((name, upload))
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    saved = SavedUploads()
    try:
        for name, upload in named:
            target = folder / name
            if target in saved.paths:  # the same name twice in one request: the last one wins
                _write(upload, target)
                continue
            if target.is_symlink() or target.is_file():
                saved.replaced[target] = _hidden_copy(target)
            saved.paths.append(target)
            _write(upload, target)
    except BaseException:
        saved.undo()
        raise
    return saved


def _write(upload: UploadFile, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while block := upload.file.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hidden_copy(path: Path) -> Path:
    """A hidden hard link to ``path`` (a copy where links are not supported), beside it."""
    copy = path.with_name(f".upload-previous-{uuid.uuid4().hex}")
    try:
        os.link(path, copy, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, copy, follow_symlinks=False)
    return copy
