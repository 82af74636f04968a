"""What every loader shares: text cleaning, a section builder that tracks headings, file reading."""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from indexes.encoding import Decoded, binary_reason, decode
from rag_app.documents import Section
from rag_app.errors import DocumentError

TABLE_ROWS_PER_SECTION = 40
"""Rows of a long table (CSV, sheet) per section; the header row is repeated in each."""

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\x0b": "\n", "\x0c": "\n", "\u2028": "\n", "\u2029": "\n"})
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def strip_controls(text: str) -> str:
    """``text`` with NUL and other control characters removed (tabs and newlines kept)."""
    return _CONTROL.sub("", text)


def inline(text: str) -> str:
    """One line: control characters removed, every run of whitespace collapsed to one space."""
    return " ".join(strip_controls(text).split())


def keep_lines(text: str) -> str:
    """Whitespace collapsed within each line; blank lines dropped; line breaks kept."""
    lines = (inline(line) for line in text.translate(_LINE_BREAKS).split("\n"))
    return "\n".join(line for line in lines if line)


def code_text(text: str) -> str:
    """Code as written: control characters removed, blank lines at both ends dropped."""
    text = strip_controls(text.replace("\r\n", "\n").translate(_LINE_BREAKS))
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


class SectionBuilder:
    """Collects sections in reading order; headings nest by level and label what follows."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []

    @property
    def path(self) -> tuple[str, ...]:
        """The current heading path, outermost first."""
        return tuple(title for _, title in self._stack)

    def reset(self, *path: str) -> None:
        """Start over with the given heading path (a new slide, a new sheet)."""
        self._stack = [(i, title) for i, title in enumerate(path)]

    def heading(self, text: str, level: int, page: int | None = None) -> None:
        """A heading of ``level`` (1 = outermost); it closes headings at the same or a deeper level."""
        text = inline(text)
        if not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self.sections.append(Section(text, page=page, heading_path=self.path, kind="heading"))
        self._stack.append((level, text))

    def text(self, text: str, page: int | None = None, *, lines: bool = False) -> None:
        """A paragraph; ``lines=True`` keeps its line breaks, otherwise it becomes one line."""
        text = keep_lines(text) if lines else inline(text)
        if text:
            self.sections.append(Section(text, page=page, heading_path=self.path, kind="text"))

    def code(self, text: str, page: int | None = None) -> None:
        """A code block, whitespace kept."""
        text = code_text(text)
        if text.strip():
            self.sections.append(Section(text, page=page, heading_path=self.path, kind="code"))

    def table(self, rows: Iterable[Sequence[object]], page: int | None = None) -> None:
        """A table: one line per non-empty row, cells joined by `` | ``; long tables are split."""
        cleaned = [row for row in (table_row(r) for r in rows) if row]
        for start in range(0, len(cleaned), TABLE_ROWS_PER_SECTION):
            part = cleaned[start : start + TABLE_ROWS_PER_SECTION]
            if start and len(cleaned) > 1:
                part = [cleaned[0], *part]
            self.sections.append(Section("\n".join(part), page=page, heading_path=self.path, kind="table"))


def table_row(cells: Sequence[object]) -> str:
    """Cells joined by `` | `` (trailing empty cells dropped); empty string for an empty row."""
    texts = [cell_text(c) for c in cells]
    while texts and not texts[-1]:
        texts.pop()
    return " | ".join(texts) if any(texts) else ""


def cell_text(value: object) -> str:
    """A table cell as one line: whole floats without ``.0``, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    return inline(str(value))


def read_bytes(path: Path) -> bytes:
    """The whole file, with OS errors turned into :class:`DocumentError`."""
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise DocumentError(str(path), "not readable (permission denied)") from exc
    except OSError as exc:
        raise DocumentError(str(path), f"not readable ({exc.strerror or exc})") from exc


def read_text(path: Path) -> tuple[str, str]:
    """The file decoded as text: ``(text, encoding)``; binary data is refused with a reason."""
    decoded = decode(read_bytes(path))
    check_text(path, decoded)
    return decoded.text, decoded.encoding


def check_text(path: Path, decoded: Decoded) -> None:
    """Raise :class:`DocumentError` when decoded text is binary junk (random bytes, an archive)."""
    reason = binary_reason(decoded)
    if reason is not None:
        raise DocumentError(str(path), reason)


def check_zip_container(path: Path, kind: str) -> None:
    """Raise a clear :class:`DocumentError` unless ``path`` is a readable zip (OOXML, ODF, EPUB)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if head == _OLE_MAGIC:
                fh.seek(0)
                if "EncryptionInfo".encode("utf-16-le") in fh.read(1 << 20):
                    raise DocumentError(str(path), f"encrypted {kind} (password required)")
                raise DocumentError(str(path), f"not a valid {kind} (legacy binary Office file)")
    except OSError as exc:
        raise DocumentError(str(path), f"not readable ({exc.strerror or exc})") from exc
    if not zipfile.is_zipfile(path):
        raise DocumentError(str(path), f"not a valid {kind} (zip archive is corrupt)")


def library_error(path: Path, kind: str, exc: Exception) -> DocumentError:
    """A :class:`DocumentError` for an exception a parsing library raised."""
    if isinstance(exc, DocumentError):
        return exc
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        return DocumentError(str(path), f"not a valid {kind} (zip archive is corrupt)")
    missing = re.search(r"no item named '([^']+)'", str(exc)) if isinstance(exc, KeyError) else None
    if missing:
        return DocumentError(str(path), f"not a valid {kind} (missing part {missing.group(1)})")
    if isinstance(exc, PermissionError):
        return DocumentError(str(path), "not readable (permission denied)")
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return DocumentError(str(path), f"not a valid {kind} ({detail})")
