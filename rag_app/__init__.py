"""rag-app: offline-first retrieval-augmented generation.

``import rag_app`` is light: the public names below load their modules on first use.

    from rag_app import RAG, Settings
    rag = RAG.open("my-index", settings=Settings.load())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["RAG", "RagAppError", "Settings", "__version__"]

if TYPE_CHECKING:
    from rag_app.errors import RagAppError
    from rag_app.rag import RAG
    from rag_app.settings import Settings

_LAZY = {"RAG": "rag_app.rag", "Settings": "rag_app.settings", "RagAppError": "rag_app.errors"}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rag_app' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
