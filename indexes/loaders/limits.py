"""How much one document may cost to load: file size, zip expansion, extracted text.

:func:`indexes.loaders.load_document` applies these before a parser sees the file (size, and
for zip-based formats the sizes in the zip's central directory) and after it (extracted text),
so a hostile file is refused with a reason that names the limit instead of filling memory.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag_app.errors import DocumentError

if TYPE_CHECKING:
    from rag_app.settings import Settings

MB = 1 << 20
RATIO_FLOOR_MB = 16.0
"""Below this many unpacked megabytes (a member, or the archive) the compression ratio is not checked:
small XML parts compress very well and cost nothing."""


@dataclass(frozen=True)
class LoadLimits:
    """Limits on loading one document; the defaults are those of ``[index]`` in the settings."""

    max_file_mb: float = 100.0
    """Largest file (``index.max_file_mb``)."""
    max_unpacked_mb: float = 512.0
    """Largest total uncompressed size of a zip-based document (``index.max_unpacked_mb``)."""
    max_zip_ratio: float = 100.0
    """Largest uncompressed / compressed size, per member and for the archive (``index.max_zip_ratio``)."""
    max_text_mb: float = 100.0
    """Largest extracted text, and largest plain-text file (``index.max_text_mb``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadLimits:
        index = settings.index
        return cls(
            max_file_mb=index.max_file_mb,
            max_unpacked_mb=index.max_unpacked_mb,
            max_zip_ratio=index.max_zip_ratio,
            max_text_mb=index.max_text_mb,
        )


def check_file_size(path: Path, size: int, limit_mb: float, setting: str) -> None:
    """Refuse a file of ``size`` bytes above ``limit_mb`` megabytes, naming the setting."""
    if size > limit_mb * MB:
        raise DocumentError(str(path), f"larger than {limit_mb:g} MB (limit {setting})")


def check_zip_expansion(path: Path, kind: str, limits: LoadLimits) -> None:
    """Refuse a zip whose central directory promises too much: no member is read or inflated.

    Python's :mod:`zipfile` (which python-docx, python-pptx, openpyxl, odfpy and ebooklib read
    through) never inflates a member past the size its directory entry declares, so these
    sizes bound what the parsers can be handed.
    """
    try:
        packed_total = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise DocumentError(str(path), f"not a valid {kind} (zip archive is corrupt)") from exc
    except OSError as exc:
        raise DocumentError(str(path), f"not readable ({exc.strerror or exc})") from exc
    unpacked_total = sum(m.file_size for m in members)
    if unpacked_total > limits.max_unpacked_mb * MB:
        raise DocumentError(
            str(path),
            f"refused as a possible zip bomb: its parts unpack to {unpacked_total / MB:,.0f} MB, "
            f"more than {limits.max_unpacked_mb:g} MB (limit index.max_unpacked_mb)",
        )
    floor = RATIO_FLOOR_MB * MB
    for name, unpacked, packed in [
        ("the archive", unpacked_total, packed_total),
        *((repr(m.filename), m.file_size, m.compress_size) for m in members),
    ]:
        ratio = unpacked / max(packed, 1)
        if unpacked > floor and ratio > limits.max_zip_ratio:
            raise DocumentError(
                str(path),
                f"refused as a possible zip bomb: {name} unpacks to {ratio:,.0f} times its size "
                f"({unpacked / MB:,.0f} MB), more than {limits.max_zip_ratio:g} (limit index.max_zip_ratio)",
            )
