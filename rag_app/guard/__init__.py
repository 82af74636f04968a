"""The hallucination guard: is each sentence of an answer supported by its passages?

``Guard`` scores answers (numpy and the embedder only), imported on first access so importing
this package stays cheap. Training the packaged model lives in :mod:`finetune.guard`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag_app.guard.guard import Guard

__all__ = ["Guard"]


def __getattr__(name: str) -> Any:
    if name == "Guard":
        from rag_app.guard.guard import Guard

        return Guard
    raise AttributeError(f"module 'rag_app.guard' has no attribute {name!r}")
