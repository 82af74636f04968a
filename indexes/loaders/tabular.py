"""CSV and TSV with the standard ``csv`` module; the delimiter of a ``.csv`` file is sniffed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from indexes.loaders.common import SectionBuilder, read_text
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError


def load_csv(path: Path) -> LoadedDocument:
    """A delimited text file as table sections (the header row repeats in each)."""
    text, encoding = read_text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff(text[:16384])
    csv.field_size_limit(1 << 24)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DocumentError(str(path), f"not valid CSV ({exc})") from exc
    builder = SectionBuilder()
    builder.table(rows)
    metadata = {"encoding": encoding, "rows": len(rows), "delimiter": delimiter}
    return LoadedDocument(str(path), "csv", builder.sections, metadata)


def _sniff(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","
