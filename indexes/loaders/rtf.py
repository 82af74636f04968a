"""RTF with striprtf: its plain text, one paragraph per line."""

from __future__ import annotations

from pathlib import Path

from striprtf.striprtf import rtf_to_text

from indexes.loaders.common import SectionBuilder, read_text
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError


def load_rtf(path: Path) -> LoadedDocument:
    """An RTF file; table rows come out as lines with cells joined by `` | ``."""
    raw, encoding = read_text(path)
    if not raw.lstrip().startswith("{\\rtf"):
        raise DocumentError(str(path), "not a valid RTF (missing {\\rtf header)")
    try:
        text = rtf_to_text(raw, errors="replace")
    except Exception as exc:  # striprtf raises plain exceptions on malformed control words
        raise DocumentError(str(path), f"not a valid RTF ({exc})") from exc
    builder = SectionBuilder()
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.rstrip().endswith("|"):  # striprtf ends every table cell with "|"
            rows.append(line.rstrip().removesuffix("|").split("|"))
            continue
        if rows:
            builder.table(rows)
            rows = []
        builder.text(line)
    builder.table(rows)
    return LoadedDocument(str(path), "rtf", builder.sections, {"encoding": encoding})
