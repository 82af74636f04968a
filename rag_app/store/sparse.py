"""BM25 over chunk texts with bm25s (stemmed, English stop words), saved beside the vectors."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

IDS_FILE = "chunk_ids.npy"


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, stemmed tokens (the same for documents and queries)."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


class SparseIndex:
    """A BM25 index whose rows map to chunk ids."""

    def __init__(self, model: Any, chunk_ids: np.ndarray) -> None:
        self.model = model
        self.chunk_ids = chunk_ids
        self._row_of: dict[int, int] | None = None

    @classmethod
    def build(cls, rows: Iterable[tuple[int, str]]) -> SparseIndex:
        import bm25s

        # bm25s sets its logger to DEBUG on import ("Building index from tokens" on every build)
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        ids, texts = [], []
        for chunk_id, text in rows:
            ids.append(chunk_id)
            texts.append(text)
        model = bm25s.BM25()
        if texts:
            model.index(tokenize(texts), show_progress=False)
        return cls(model, np.asarray(ids, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def save(self, folder: Path) -> None:
        """Write into a fresh folder (the caller renames it into place)."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if len(self):
            self.model.save(str(folder))
        np.save(folder / IDS_FILE, self.chunk_ids)
        (folder / "meta.json").write_text(json.dumps({"rows": len(self)}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SparseIndex:
        import bm25s

        chunk_ids = np.load(folder / IDS_FILE)
        model = bm25s.BM25.load(str(folder), mmap=False) if len(chunk_ids) else bm25s.BM25()
        return cls(model, chunk_ids)

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-``k`` (chunk id, BM25 score), zero scores dropped."""
        if not len(self) or k <= 0:
            return []
        tokens = tokenize([query])
        if not tokens[0]:
            return []
        mask = None
        if allowed_ids is not None:
            mask = np.isin(self.chunk_ids, allowed_ids).astype(np.float32)
            if not mask.any():
                return []
        k = min(k, len(self))
        rows, scores = self.model.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [
            (int(self.chunk_ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if s > 0.0
        ]
