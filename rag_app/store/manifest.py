"""The manifest: what an index was built with, readable by people and checked on open."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag_app.errors import IndexMismatchError, IndexNotFoundError
from rag_app.store.fsutil import atomic_write_text

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def utc_now() -> str:
    """The time now as the manifest records it (``created_at``, ``updated_at``): ISO 8601, UTC."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Manifest:
    """Facts about an index folder, mirrored from the docstore after every commit."""

    embedding_model: str
    """Model name, e.g. ``all-MiniLM-L6-v2``: queries must be embedded with the same model."""
    embedding_model_id: str
    """Model and numerics, e.g. ``all-MiniLM-L6-v2@onnx-int8``."""
    dimension: int
    metric: str = "inner_product"
    """Vectors are unit-norm, so inner product is cosine similarity."""
    backend: str = "faiss"
    """Where the vectors are served from: ``faiss`` (``vectors_file``) or ``milvus`` (the collection
    in ``index_params``: ``uri`` without credentials, ``collection``)."""
    index_type: str = "flat"
    index_params: dict[str, Any] = field(default_factory=dict)
    chunk_tokens: int = 256
    overlap_tokens: int = 32
    schema_version: int = SCHEMA_VERSION
    generation: int = 0
    """The docstore generation the derived files below were built from."""
    vectors_file: str = ""
    """Name of the FAISS file of this generation (``vectors.<generation>.faiss``), or of the file
    naming its Milvus collection (``vectors.<generation>.milvus.json``)."""
    bm25_dir: str = ""
    """Name of the BM25 folder of this generation (``bm25.<generation>``)."""
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    created_at: str = ""
    updated_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / MANIFEST_NAME, self.to_json() + "\n")

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise IndexNotFoundError(
                f"no index at {folder} (missing {MANIFEST_NAME}); run `rag-app ingest` first"
            )
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise IndexNotFoundError(f"{path} is not a valid manifest: {exc}") from None

    def check_compatible(self, model_name: str, dimension: int) -> None:
        """Raise :class:`IndexMismatchError` if queries from this embedder do not fit the index."""
        if self.schema_version > SCHEMA_VERSION:
            raise IndexMismatchError(
                f"index schema version {self.schema_version} is newer than this rag-app supports "
                f"({SCHEMA_VERSION}); upgrade rag-app"
            )
        if self.embedding_model != model_name or self.dimension != dimension:
            raise IndexMismatchError(
                f"index was built with embedding model {self.embedding_model!r} ({self.dimension} dims) "
                f"but embedding.model is {model_name!r} ({dimension} dims); set embedding.model to "
                f"{self.embedding_model!r} or re-ingest into a new index"
            )
