"""EPUB with ebooklib: the chapters in spine order, each read by the HTML loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexes.loaders.common import SectionBuilder, check_zip_container, inline, library_error
from indexes.loaders.html import decode_html, html_sections, parse_html
from rag_app.documents import LoadedDocument

_DOCUMENT_TYPES = ("application/xhtml+xml", "text/html")


def load_epub(path: Path) -> LoadedDocument:
    """An e-book: chapter headings nest as in HTML; title and author go into the metadata."""
    import ebooklib
    from ebooklib import epub

    check_zip_container(path, "EPUB")
    try:
        book = epub.read_epub(str(path), options={"ignore_ncx": True})
        builder = SectionBuilder()
        chapters = 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if item is None or not _is_document(item, ebooklib.ITEM_DOCUMENT):
                continue
            before = len(builder.sections)
            text, _ = decode_html(item.get_content())
            if text.strip():
                html_sections(parse_html(text, path), builder)
            chapters += len(builder.sections) > before
        metadata = {"chapters": chapters, **_dc(book, "title", "title"), **_dc(book, "creator", "author")}
        language = _dc(book, "language", "language")
        metadata.update(language)
    except Exception as exc:
        raise library_error(path, "EPUB", exc) from exc
    return LoadedDocument(str(path), "epub", builder.sections, metadata)


def _is_document(item: Any, document_type: int) -> bool:
    return bool(item.get_type() == document_type or item.media_type in _DOCUMENT_TYPES)


def _dc(book: Any, name: str, key: str) -> dict[str, str]:
    values = book.get_metadata("DC", name)
    if values and values[0] and values[0][0]:
        return {key: inline(str(values[0][0]))}
    return {}
