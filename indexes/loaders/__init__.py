"""Document loaders: one entry point, :func:`load_document`, dispatching on the file extension.

Each format family lives in its own module, imported only when a file of that type is
loaded, so ``import indexes.loaders`` stays cheap (no lxml, no pdfium).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from indexes.loaders.limits import MB, LoadLimits, check_file_size, check_zip_expansion
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError, UnsupportedFormatError

__all__ = ["SUPPORTED_EXTENSIONS", "LoadLimits", "load_document"]

log = logging.getLogger(__name__)

_LOADERS: dict[str, tuple[str, str]] = {
    ".txt": ("text", "load_text"),
    ".md": ("text", "load_markdown"),
    ".markdown": ("text", "load_markdown"),
    ".rst": ("text", "load_rst"),
    ".html": ("html", "load_html"),
    ".htm": ("html", "load_html"),
    ".xhtml": ("html", "load_html"),
    ".pdf": ("pdf", "load_pdf"),
    ".docx": ("office", "load_docx"),
    ".pptx": ("office", "load_pptx"),
    ".xlsx": ("office", "load_xlsx"),
    ".odt": ("office", "load_odt"),
    ".csv": ("tabular", "load_csv"),
    ".tsv": ("tabular", "load_csv"),
    ".eml": ("mail", "load_eml"),
    ".epub": ("epub", "load_epub"),
    ".rtf": ("rtf", "load_rtf"),
    ".json": ("jsondoc", "load_json"),
    ".jsonl": ("jsondoc", "load_jsonl"),
}
"""Extension → (module under ``indexes.loaders``, function name)."""

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_LOADERS)
"""File extensions :func:`load_document` handles, lower case, with the dot."""

ZIP_FORMATS: dict[str, str] = {
    ".docx": "DOCX",
    ".pptx": "PPTX",
    ".xlsx": "XLSX",
    ".odt": "ODT",
    ".epub": "EPUB",
}
"""Extensions of zip-based formats, and their names in messages."""

_PLAIN_TEXT = frozenset(
    suffix for suffix, (module, _) in _LOADERS.items() if module in {"text", "tabular", "jsondoc"}
)
"""Formats whose whole file becomes text: the text limit applies to the file before it is read."""

_TEXT_BUDGETED = frozenset({".pdf"})
"""Formats whose text is not bounded by the file's size or a zip directory: their loader takes
``max_text_mb`` and stops as soon as it is passed (the others are checked once loaded)."""


def load_document(path: str | Path, *, limits: LoadLimits | None = None) -> LoadedDocument:
    """Load one file into a :class:`LoadedDocument` with structure-aware sections.

    Raises :class:`UnsupportedFormatError` for an unknown extension and
    :class:`DocumentError` (with a short reason) for a broken, encrypted, unreadable, binary,
    text-less or too large file; no parser exception escapes unwrapped. ``limits`` (default:
    :class:`LoadLimits`'s defaults) bound what one file may cost: its size, for zip-based formats
    the unpacked size and compression ratio read from the zip directory before any member is
    inflated, and the extracted text.
    """
    path = Path(path)
    limits = limits or LoadLimits()
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        kind = f"file type {suffix}" if suffix else "file type (no extension)"
        raise UnsupportedFormatError(str(path), f"unsupported {kind}")
    _check_before_parsing(path, suffix, limits)
    loader = _loader(suffix)
    options = {"max_text_mb": limits.max_text_mb} if suffix in _TEXT_BUDGETED else {}
    try:
        document = loader(path, **options)
    except DocumentError:
        raise
    except MemoryError as exc:
        raise DocumentError(str(path), "too large to load (out of memory)") from exc
    except Exception as exc:  # a parser bug on one file becomes a clear per-file error
        log.debug("loader failed on %s", path, exc_info=True)
        raise DocumentError(str(path), f"could not be parsed ({type(exc).__name__}: {exc})") from exc
    document.sections = [s for s in document.sections if s.text.strip()]
    if not document.sections:
        raise DocumentError(str(path), _no_text_reason(document.format))
    chars = sum(len(s.text) for s in document.sections)
    if chars > limits.max_text_mb * MB:
        raise DocumentError(
            str(path),
            f"its text is larger than {limits.max_text_mb:g} MB ({chars:,} characters; "
            "limit index.max_text_mb)",
        )
    return document


def _check_before_parsing(path: Path, suffix: str, limits: LoadLimits) -> None:
    """The limits that can be checked without parsing: file size, zip directory, plain-text size."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(str(path), f"not readable ({exc.strerror or exc})") from exc
    check_file_size(path, size, limits.max_file_mb, "index.max_file_mb")
    if suffix in _PLAIN_TEXT:
        check_file_size(path, size, limits.max_text_mb, "index.max_text_mb")
    if suffix in ZIP_FORMATS:
        from indexes.loaders.common import check_zip_container

        check_zip_container(path, ZIP_FORMATS[suffix])  # encrypted or legacy Office: its own reason
        check_zip_expansion(path, ZIP_FORMATS[suffix], limits)


def _loader(suffix: str) -> Callable[..., LoadedDocument]:
    module_name, function = _LOADERS[suffix]
    module = importlib.import_module(f"{__name__}.{module_name}")
    loader: Callable[..., LoadedDocument] = getattr(module, function)
    return loader


def _no_text_reason(fmt: str) -> str:
    if fmt == "pdf":
        return "no text found (scanned PDF without a text layer? OCR is not supported)"
    return "no text found"
