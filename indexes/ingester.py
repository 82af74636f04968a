"""The ingest pipeline as the :class:`rag_app.ingest.Ingester` that the ``RAG`` facade writes through.

Registered under the ``rag_app.ingesters`` entry point (``pyproject.toml``), so ``RAG(...).ingest``
finds it without ``rag_app`` importing this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from indexes.loaders import SUPPORTED_EXTENSIONS
from rag_app.ingest import IngestReport, ProgressCallback

if TYPE_CHECKING:
    from indexes.ray_ingest import RayOptions
    from rag_app.documents import LoadedDocument
    from rag_app.embeddings.base import Embedder
    from rag_app.settings import Settings


class Ingester:
    """Discover → load → clean → chunk → embed → commit (:mod:`indexes.pipeline`).

    ``ray``: ingest files through Ray Data instead (:mod:`indexes.ray_ingest`): a cluster address,
    :data:`~rag_app.ingest.LOCAL_RAY` to start Ray here, or :class:`~indexes.ray_ingest.RayOptions`.
    In-memory documents are always ingested locally.
    """

    def __init__(self, ray: str | RayOptions | None = None) -> None:
        if isinstance(ray, str):
            from indexes.ray_ingest import RayOptions

            ray = RayOptions(address=ray)
        self.ray = ray

    @property
    def extensions(self) -> frozenset[str]:
        """The extensions :mod:`indexes.loaders` reads."""
        return SUPPORTED_EXTENSIONS

    def files(self, paths: Sequence[str | Path], settings: Settings) -> list[Path]:
        """The files :meth:`ingest` would read (:func:`indexes.discovery.discover`)."""
        from indexes.discovery import discover

        return discover(paths, max_bytes=int(settings.index.max_file_mb * 2**20)).files

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
        """:func:`indexes.pipeline.ingest`, or :func:`indexes.ray_ingest.ingest` when built with ``ray``."""
        if self.ray is not None:
            from indexes import ray_ingest

            return ray_ingest.ingest(
                paths,
                index_dir,
                settings,
                embedder,
                self.ray,
                prune=prune,
                progress=progress,
                on_progress=on_progress,
                wait=wait,
            )
        from indexes.pipeline import ingest

        return ingest(
            paths,
            index_dir,
            settings,
            embedder,
            prune=prune,
            progress=progress,
            on_progress=on_progress,
            wait=wait,
        )

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
        """:func:`indexes.pipeline.ingest_documents`."""
        from indexes.pipeline import ingest_documents

        return ingest_documents(
            documents, index_dir, settings, embedder, progress=progress, on_progress=on_progress, wait=wait
        )
