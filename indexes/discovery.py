"""Finding the files to ingest: walk paths, follow symlinks safely, say why a file is skipped.

Nothing here reads file contents except :func:`content_hash`; discovery only stats files
and opens them once to check that they can be read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexes.loaders import SUPPORTED_EXTENSIONS
from rag_app.ingest import source_name as source_name  # the index key; re-exported

JUNK_DIRS = frozenset({"__pycache__", "node_modules"})
"""Folder names never walked into (besides hidden folders such as ``.git`` and ``.venv``)."""

_BLOCK = 1 << 20


@dataclass
class Skipped:
    """A file or folder that will not be ingested, and why."""

    path: str
    reason: str


@dataclass
class Discovery:
    """What :func:`discover` found: files to load, things skipped, and paths that do not exist."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def discover(
    paths: Sequence[str | Path],
    *,
    max_bytes: int,
    extensions: frozenset[str] = SUPPORTED_EXTENSIONS,
) -> Discovery:
    """Walk ``paths`` (files and folders) in a deterministic order.

    Folders are walked recursively in name order; hidden files and folders and
    :data:`JUNK_DIRS` inside them are passed over silently. Symlinks are followed, but a
    link back into its own ancestry is reported as ``"symlink loop"``. Files come back as
    absolute, resolved, de-duplicated paths.
    """
    walker = _Walker(max_bytes, extensions)
    for given in paths:
        path = Path(given).expanduser()
        if not os.path.lexists(path):
            walker.result.missing.append(str(given))
            continue
        walker.visit(Path(os.path.abspath(path)), ancestors=frozenset())
    return walker.result


def content_hash(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _Walker:
    def __init__(self, max_bytes: int, extensions: frozenset[str]) -> None:
        self.max_bytes = max_bytes
        self.extensions = frozenset(e.lower() for e in extensions)
        self.result = Discovery()
        self._seen_files: set[str] = set()
        self._seen_dirs: set[str] = set()

    def skip(self, path: Path, reason: str) -> None:
        self.result.skipped.append(Skipped(str(path), reason))

    def visit(self, path: Path, ancestors: frozenset[str]) -> None:
        try:
            info = os.stat(path)
        except OSError as exc:
            self.skip(path, _stat_error(path, exc))
            return
        if stat.S_ISDIR(info.st_mode):
            self._walk_dir(path, ancestors)
        elif stat.S_ISREG(info.st_mode):
            self._check_file(path, info.st_size)
        else:
            self.skip(path, "not a regular file")

    def _walk_dir(self, path: Path, ancestors: frozenset[str]) -> None:
        real = os.path.realpath(path)
        if real in ancestors:
            self.skip(path, "symlink loop")
            return
        if real in self._seen_dirs:
            return  # reached again through another link: already walked
        self._seen_dirs.add(real)
        try:
            names = sorted(os.listdir(path))
        except PermissionError:
            self.skip(path, "not readable (permission denied)")
            return
        except OSError as exc:
            self.skip(path, f"not readable ({exc.strerror or exc})")
            return
        inside = ancestors | {real}
        for name in names:
            if name.startswith(".") or name in JUNK_DIRS:
                continue
            self.visit(path / name, inside)

    def _check_file(self, path: Path, size: int) -> None:
        suffix = path.suffix.lower()
        if suffix not in self.extensions:
            self.skip(path, f"unsupported file type {suffix or '(no extension)'}")
            return
        if size == 0:
            self.skip(path, "empty file (0 bytes)")
            return
        if size > self.max_bytes:
            self.skip(path, f"larger than {self.max_bytes / (1 << 20):g} MB (limit index.max_file_mb)")
            return
        if not os.access(path, os.R_OK):
            self.skip(path, "not readable (permission denied)")
            return
        try:
            with open(path, "rb"):
                pass
        except PermissionError:
            self.skip(path, "not readable (permission denied)")
            return
        except OSError as exc:
            self.skip(path, f"not readable ({exc.strerror or exc})")
            return
        resolved = path.resolve()
        if str(resolved) not in self._seen_files:
            self._seen_files.add(str(resolved))
            self.result.files.append(resolved)


def _stat_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if os.path.islink(path):
        return "broken symlink"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    return f"not readable ({exc.strerror or exc})"
