"""HTML with lxml: one pass over the element tree, headings, paragraphs, ``<pre>`` and tables.

Navigation, headers, footers, scripts and styles are dropped. Text outside any block
element collects into paragraphs; ``<br>`` keeps a line break inside one.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html

from indexes.encoding import Decoded, bom_encoding, decode_bytes
from indexes.loaders.common import SectionBuilder, check_text, inline, read_bytes
from rag_app.documents import LoadedDocument, Section
from rag_app.errors import DocumentError

SKIP = frozenset(
    {
        *("script", "style", "nav", "footer", "header", "noscript", "template", "svg", "iframe"),
        *("object", "embed", "canvas", "button", "select", "textarea", "head", "title", "dialog"),
    }
)
"""Elements whose content is never text of the document."""

BLOCK = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "center", "dd", "details", "div", "dl"),
        *("dt", "fieldset", "figcaption", "figure", "form", "hgroup", "hr", "html", "li", "main"),
        *("menu", "ol", "p", "section", "summary", "ul", "caption", "legend", "tbody", "thead"),
        *("tfoot", "tr", "td", "th", "table"),
    }
)
"""Elements that start and end a paragraph."""

HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BR = "\x1e"  # stands for <br> until a paragraph is finished
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")
_SINGLE_BYTE = frozenset({"cp1252", "latin-1", "iso8859-1", "ascii", "iso8859-15"})


def load_html(path: Path) -> LoadedDocument:
    """An HTML/XHTML file; the ``<title>`` goes into the metadata."""
    text, encoding = decode_html(read_bytes(path))
    check_text(path, Decoded(text, encoding, "detected"))  # random bytes named .html are not a page
    root = parse_html(text, path)
    builder = SectionBuilder()
    html_sections(root, builder)
    metadata: dict[str, Any] = {"encoding": encoding}
    title = root.findtext(".//title")
    if title and inline(title):
        metadata["title"] = inline(title)
    lang = root.get("lang")
    if lang:
        metadata["language"] = lang
    return LoadedDocument(str(path), "html", builder.sections, metadata)


def decode_html(data: bytes) -> tuple[str, str]:
    """Decode HTML bytes: a BOM wins, then a ``<meta charset>`` that fits the bytes, then guessing."""
    if bom_encoding(data) is None:
        declared = _declared_charset(data[:4096])
        if declared is not None:
            try:
                text = data.decode(declared)
            except UnicodeDecodeError:
                pass
            else:
                if declared not in _SINGLE_BYTE or not _is_utf8_beyond_ascii(data):
                    return text, declared
    return decode_bytes(data)


def parse_html(text: str, path: Path | str) -> Any:
    """Parse decoded HTML into an lxml tree (comments and processing instructions removed)."""
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        return lxml.html.document_fromstring(_XML_DECLARATION.sub("", text, count=1), parser=parser)
    except lxml.etree.ParserError as exc:  # "Document is empty"
        raise DocumentError(str(path), "no text found") from exc
    except ValueError as exc:
        raise DocumentError(str(path), f"not valid HTML ({exc})") from exc


def html_sections(root: Any, builder: SectionBuilder, page: int | None = None) -> list[Section]:
    """Append the sections of the tree under ``root`` to ``builder`` (and return its sections)."""
    buf: list[str] = []

    def flush() -> None:
        if buf:
            lines = (inline(part) for part in "".join(buf).split(_BR))
            builder.text("\n".join(line for line in lines if line), page, lines=True)
            buf.clear()

    walker = lxml.etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "end":
            if tag in BLOCK:
                flush()
            if el.tail:
                buf.append(el.tail)
            continue
        if (tag in SKIP and not _article_header(el)) or el.get("hidden") is not None:
            walker.skip_subtree()
        elif tag in HEADINGS:
            flush()
            builder.heading(visible_text(el), HEADINGS[tag], page)
            walker.skip_subtree()
        elif tag == "pre":
            flush()
            builder.code(visible_text(el), page)
            walker.skip_subtree()
        elif tag == "table" and _is_data_table(el):
            flush()
            builder.table(_table_rows(el), page)
            walker.skip_subtree()
        elif tag == "br":
            buf.append(_BR)
        else:
            if tag in BLOCK:
                flush()
            if el.text:
                buf.append(el.text)
    flush()
    return builder.sections


def visible_text(element: Any) -> str:
    """The text under ``element``, without what :data:`SKIP` elements hold (scripts in a cell)."""
    if next(element.iterdescendants(*SKIP), None) is None:
        return "".join(element.itertext())
    parts: list[str] = []
    walker = lxml.etree.iterwalk(element, events=("start", "end"))
    for event, el in walker:
        if event == "start":
            if el.tag in SKIP:
                walker.skip_subtree()
            elif el.text:
                parts.append(el.text)
        elif el is not element and el.tail:
            parts.append(el.tail)
    return "".join(parts)


def _article_header(el: Any) -> bool:
    """A ``<header>`` inside an article holds its title: keep it (a page's own header is dropped)."""
    return el.tag == "header" and next(el.iterancestors("article", "main"), None) is not None


def _is_data_table(table: Any) -> bool:
    """False for layout tables (holding tables, headings or code): those are read as blocks."""
    return next(table.iterdescendants("table", "h1", "h2", "h3", "h4", "h5", "h6", "pre"), None) is None


def _table_rows(table: Any) -> list[list[str]]:
    rows = []
    for tr in table.iterdescendants("tr"):
        rows.append([visible_text(cell) for cell in tr if cell.tag in ("td", "th")])
    return rows


def _declared_charset(head: bytes) -> str | None:
    match = _META_CHARSET.search(head)
    if not match:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    if name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"  # what browsers do, per the HTML standard
    if name.startswith("utf-16") or name.startswith("utf-32"):
        return None  # a meta tag readable as ASCII cannot be telling the truth about UTF-16
    return name


def _is_utf8_beyond_ascii(data: bytes) -> bool:
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
