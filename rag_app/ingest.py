"""The ingest seam: the :class:`rag_app.RAG` facade writes documents through an :class:`Ingester`.

``rag_app`` never imports the package that builds indexes: the facade takes an ``ingester``, or
finds the installed one under the ``rag_app.ingesters`` entry point (``indexes`` declares
``indexes.ingester:Ingester`` there). The report and the source key live here because both sides
speak them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from rag_app.documents import LoadedDocument
    from rag_app.embeddings.base import Embedder
    from rag_app.settings import Settings

ENTRY_POINT_GROUP = "rag_app.ingesters"
"""The entry-point group an ingest package registers its :class:`Ingester` class under."""

ProgressCallback = Callable[[int, int, str], None]
"""``on_progress(done, total, source)``: called as each file (or in-memory document) is taken up."""
LOCAL_RAY = "local"
"""The Ray "address" that starts Ray on this machine (``rag-app ingest --ray`` without a value)."""


@dataclass
class IngestReport:
    """What an ingest did; ``--json`` prints this."""

    index: str
    files_seen: int = 0
    files_ingested: int = 0
    files_unchanged: int = 0
    files_failed: list[dict[str, str]] = field(default_factory=list)
    files_skipped: list[dict[str, str]] = field(default_factory=list)
    files_removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    bytes_ingested: int = 0
    seconds: float = 0.0
    pii_redacted: dict[str, int] = field(default_factory=dict)
    """With ``index.redact_pii``: redactions made, by placeholder type (``{"EMAIL": 3}``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def nothing_ingested(self) -> bool:
        return self.files_ingested == 0 and self.files_unchanged == 0 and self.files_removed == 0


@runtime_checkable
class Ingester(Protocol):
    """Writes files or in-memory documents into an index folder (creating it when needed)."""

    @property
    def extensions(self) -> frozenset[str]:
        """The file extensions it loads (``.pdf``, ``.md``, ...), lower case with the dot."""
        ...

    def files(self, paths: Sequence[str | Path], settings: Settings) -> list[Path]:
        """The files that :meth:`ingest` would read under ``paths`` (folders walked, links followed)."""
        ...

    def ingest(
        self,
        paths: Sequence[str | Path],
        index_dir: str | Path,
        settings: Settings,
        embedder: Embedder,
        *,
        prune: bool = False,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        wait: float | None = None,
    ) -> IngestReport:
        """Add, update (``prune``: and remove) the documents of files and folders."""
        ...

    def ingest_documents(
        self,
        documents: Iterable[LoadedDocument],
        index_dir: str | Path,
        settings: Settings,
        embedder: Embedder,
        *,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        wait: float | None = None,
    ) -> IngestReport:
        """Add or replace documents built in memory (``source`` is their key)."""
        ...


def installed_ingester(*, ray: str | None = None) -> Ingester:
    """The :class:`Ingester` registered under :data:`ENTRY_POINT_GROUP` (``indexes``, when installed).

    ``ray``: ingest through Ray Data on the cluster at this address, or :data:`LOCAL_RAY` to start
    Ray here (the ingester class takes it as ``ray=``).
    """
    import importlib.metadata

    found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    if not found:
        raise ConfigError(
            f"no ingester is installed (entry point group {ENTRY_POINT_GROUP!r}): "
            "install rag-app with its `indexes` package, or pass RAG(..., ingester=...)"
        )
    factory = found[0].load()
    if ray is None:
        ingester: Ingester = factory()
        return ingester
    if "ray" not in inspect.signature(factory).parameters:
        raise ConfigError(f"the installed ingester {found[0].value} cannot ingest through Ray")
    ingester = factory(ray=ray)
    return ingester


def source_name(path: str | Path) -> str:
    """``path`` as text that SQLite, JSON and a terminal accept: the key a file is indexed under.

    A file name that is not valid UTF-8 comes from the OS with surrogate escapes; its stray bytes
    are written as ``\\xNN`` (``caf\\xe9.txt``), so the file is indexed (and found unchanged on the
    next ingest) under that name. Valid names are returned as they are.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no file name decoded to
            raw = text.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")
    return text
