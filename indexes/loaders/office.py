"""Office documents: DOCX (python-docx), PPTX (python-pptx), XLSX (openpyxl) and ODT (odfpy)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from indexes.loaders.common import SectionBuilder, cell_text, check_zip_container, inline, library_error
from rag_app.documents import LoadedDocument

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
_CODE_STYLE = re.compile(r"code|preformatted|verbatim", re.I)


def load_docx(path: Path) -> LoadedDocument:
    """A Word document: "Heading N" (and "Title") styles become headings; tables in place."""
    import docx
    from docx.table import Table

    check_zip_container(path, "DOCX")
    try:
        document = docx.Document(str(path))
        builder = SectionBuilder()
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                builder.table(_docx_rows(block))
                continue
            style = block.style.name if block.style is not None else ""
            heading = _HEADING_STYLE.match(style or "")
            if heading or style == "Title":
                builder.heading(block.text, int(heading.group(1)) if heading else 0)
            elif _CODE_STYLE.search(style or ""):
                builder.code(block.text)
            else:
                builder.text(block.text)
        props = document.core_properties
        metadata = _present(title=props.title, author=props.author, subject=props.subject)
    except Exception as exc:
        raise library_error(path, "DOCX", exc) from exc
    return LoadedDocument(str(path), "docx", builder.sections, metadata)


def _docx_rows(table: Any) -> list[list[str]]:
    """Rows of a Word table; a merged cell counts once, a nested table's text joins its cell."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(_docx_cell_text(cell))
        rows.append(cells)
    return rows


def _docx_cell_text(cell: Any) -> str:
    from docx.table import Table

    parts: list[str] = []
    for block in cell.iter_inner_content():
        if isinstance(block, Table):
            parts.extend(" ".join(r) for r in _docx_rows(block))
        else:
            parts.append(block.text)
    return inline(" ".join(parts))


def load_pptx(path: Path) -> LoadedDocument:
    """A PowerPoint deck: one page per slide, the slide title as heading, then text, tables, notes."""
    import pptx

    check_zip_container(path, "PPTX")
    try:
        deck = pptx.Presentation(str(path))
        builder = SectionBuilder()
        count = 0
        for number, slide in enumerate(deck.slides, start=1):
            count = number
            builder.reset()
            title_shape = slide.shapes.title
            if title_shape is not None and title_shape.has_text_frame:
                builder.heading(title_shape.text_frame.text, 1, number)
            shapes = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
            for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
                _pptx_shape(shape, builder, number)
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                builder.text(slide.notes_slide.notes_text_frame.text, number, lines=True)
        props = deck.core_properties
        metadata = _present(title=props.title, author=props.author, subject=props.subject)
        metadata["page_count"] = count
    except Exception as exc:
        raise library_error(path, "PPTX", exc) from exc
    return LoadedDocument(str(path), "pptx", builder.sections, metadata)


def _pptx_shape(shape: Any, builder: SectionBuilder, page: int) -> None:
    if getattr(shape, "shapes", None) is not None:  # a group: its members in order
        for member in shape.shapes:
            _pptx_shape(member, builder, page)
    elif getattr(shape, "has_table", False) and shape.has_table:
        builder.table([[cell.text for cell in row.cells] for row in shape.table.rows], page)
    elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        builder.text(shape.text_frame.text, page, lines=True)


def load_xlsx(path: Path) -> LoadedDocument:
    """An Excel workbook: each non-empty sheet as table sections under the sheet's name."""
    import openpyxl

    check_zip_container(path, "XLSX")
    try:
        workbook = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:
        raise library_error(path, "XLSX", exc) from exc
    try:
        builder = SectionBuilder()
        sheets = []
        for sheet in workbook.worksheets:
            builder.reset(sheet.title)
            before = len(builder.sections)
            builder.table(sheet.iter_rows(values_only=True))
            if len(builder.sections) > before:
                sheets.append(sheet.title)
        props = workbook.properties
        metadata = _present(title=props.title, author=props.creator)
        metadata["sheets"] = sheets
    except Exception as exc:
        raise library_error(path, "XLSX", exc) from exc
    finally:
        workbook.close()
    return LoadedDocument(str(path), "xlsx", builder.sections, metadata)


def load_odt(path: Path) -> LoadedDocument:
    """An OpenDocument text: ``text:h`` headings by outline level, paragraphs, lists and tables."""
    from odf import opendocument

    check_zip_container(path, "ODT")
    try:
        document = opendocument.load(str(path))
        builder = SectionBuilder()
        _odt_walk(document.body, builder)
        metadata = _odt_metadata(document)
    except Exception as exc:
        raise library_error(path, "ODT", exc) from exc
    return LoadedDocument(str(path), "odt", builder.sections, metadata)


_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


def _odt_walk(node: Any, builder: SectionBuilder) -> None:
    from odf import teletype

    for child in node.childNodes:
        if child.nodeType != child.ELEMENT_NODE:
            continue
        name = child.qname
        if name == (_TEXT_NS, "h"):
            level = child.getAttrNS(_TEXT_NS, "outline-level")
            builder.heading(teletype.extractText(child), int(level) if level and level.isdigit() else 1)
        elif name == (_TEXT_NS, "p"):
            builder.text(teletype.extractText(child))
        elif name == (_TABLE_NS, "table"):
            builder.table(_odt_rows(child))
        else:  # lists, sections, frames: their paragraphs in order
            _odt_walk(child, builder)


def _odt_rows(table: Any) -> list[list[str]]:
    from odf import teletype
    from odf.table import TableRow

    return [
        [teletype.extractText(cell) for cell in row.childNodes if cell.nodeType == cell.ELEMENT_NODE]
        for row in table.getElementsByType(TableRow)
    ]


def _odt_metadata(document: Any) -> dict[str, Any]:
    from odf import dc, teletype

    found: dict[str, str] = {}
    for key, element in (("title", dc.Title), ("author", dc.Creator)):
        nodes = document.meta.getElementsByType(element)
        if nodes:
            found[key] = teletype.extractText(nodes[0])
    return _present(**found)


def _present(**values: Any) -> dict[str, Any]:
    """The metadata values that are set, as strings."""
    texts = {key: cell_text(value) for key, value in values.items()}
    return {key: text for key, text in texts.items() if text}
