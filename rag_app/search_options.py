"""Values every edge that searches shares (settings, CLI, REST, integrations): defined once here.

A module of its own, with no imports beyond ``typing``, so the CLI can name them in its options
without importing the settings (pydantic) at start-up.
"""

from __future__ import annotations

from typing import Literal, get_args

RetrievalMode = Literal["hybrid", "dense", "bm25"]
"""How passages are found: dense (FAISS) and BM25 fused, or one of them alone."""
RETRIEVAL_MODES: tuple[str, ...] = get_args(RetrievalMode)
"""The retrieval modes, for choices and messages."""
MAX_K = 1000
"""Most passages one search returns (``retrieval.k``, CLI ``-k``, REST ``k``)."""
