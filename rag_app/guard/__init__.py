"""The hallucination guard: is each sentence of an answer supported by its passages?

``Guard`` scores answers (numpy and the embedder only); ``train_guard`` learns the packaged model
(needs scikit-learn, the ``train`` extra). Both are imported on first access, so importing this
package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag_app.guard.guard import Guard
    from rag_app.guard.train import train_guard

__all__ = ["Guard", "train_guard"]


def __getattr__(name: str) -> Any:
    if name == "Guard":
        from rag_app.guard.guard import Guard

        return Guard
    if name == "train_guard":
        from rag_app.guard.train import train_guard

        return train_guard
    raise AttributeError(f"module 'rag_app.guard' has no attribute {name!r}")
