"""PDF with pypdfium2: the text layer page by page, cut into paragraphs.

pdfium gives one line per visual line and no blank lines, so a paragraph ends after a
line that is short and ends a sentence, or at a blank line; the lines of a paragraph are
joined with spaces (pdfium marks hyphenation with U+FFFE, which is resolved here).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from indexes.loaders.common import SectionBuilder
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError

_META_KEYS = {"Title": "title", "Author": "author", "Subject": "subject", "Keywords": "keywords"}
_SOFT_HYPHEN = re.compile("\ufffe(.)")
_PDFIUM_LOCK = threading.Lock()
"""pdfium is not thread-safe: one document at a time per process."""
_SENTENCE_END = (".", "!", "?", ":", "。", "!", "?")


def load_pdf(path: Path, *, max_text_mb: float | None = None) -> LoadedDocument:
    """A PDF file; each section carries its 1-based page number.

    ``max_text_mb``: stop with :class:`DocumentError` as soon as the text read passes it (the
    compressed streams of a small PDF can hold far more text than the file's size suggests).
    """
    with _PDFIUM_LOCK:
        return _load_pdf(path, max_text_mb)


def _load_pdf(path: Path, max_text_mb: float | None) -> LoadedDocument:
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise DocumentError(str(path), _open_error(exc)) from exc
    try:
        builder = SectionBuilder()
        budget = None if max_text_mb is None else int(max_text_mb * (1 << 20))
        chars = 0
        for index in range(len(pdf)):
            text = _page_text(pdf, index)
            chars += len(text)
            if budget is not None and chars > budget:
                raise DocumentError(
                    str(path),
                    f"its text is larger than {max_text_mb:g} MB (by page {index + 1}; "
                    "limit index.max_text_mb)",
                )
            for paragraph in paragraphs(text):
                builder.text(paragraph, index + 1)
        metadata: dict[str, Any] = {"page_count": len(pdf)}
        info = pdf.get_metadata_dict()
        for key, name in _META_KEYS.items():
            value = str(info.get(key) or "").strip()
            if value:
                metadata[name] = value
    except pdfium.PdfiumError as exc:
        raise DocumentError(str(path), f"not a valid PDF ({exc})") from exc
    finally:
        pdf.close()
    return LoadedDocument(str(path), "pdf", builder.sections, metadata)


def _page_text(pdf: Any, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_range())
        finally:
            textpage.close()
    finally:
        page.close()


def paragraphs(text: str) -> list[str]:
    """A page's text as paragraphs, each on one line."""
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    widths = sorted(len(line) for line in lines if line)
    if not widths:
        return []
    short = 0.75 * widths[len(widths) // 2]
    result: list[str] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        if current and (not line or (line.endswith(_SENTENCE_END) and len(line) < short)):
            result.append(_join(current))
            current = []
    if current:
        result.append(_join(current))
    return result


def _join(lines: list[str]) -> str:
    """Lines joined with spaces; a hyphenation mark glues the word halves together."""
    text = ""
    for line in lines:
        text = text + line if not text or text.endswith("\ufffe") else text + " " + line
    if "\ufffe" in text:
        text = _SOFT_HYPHEN.sub(_unhyphenate, text).replace("\ufffe", "")
    return text


def _unhyphenate(match: re.Match[str]) -> str:
    """``ef|ficient`` → ``efficient``, but ``Lucene|BM25`` → ``Lucene-BM25``."""
    after = match.group(1)
    return after if after.islower() else "-" + after


def _open_error(exc: Any) -> str:
    code = getattr(exc, "err_code", None)
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return "encrypted PDF (password required)"
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return "encrypted PDF (unsupported security handler)"
    if code == pdfium_c.FPDF_ERR_FILE:
        return "not readable (file not found or not accessible)"
    return "not a valid PDF (file is damaged or not a PDF)"
