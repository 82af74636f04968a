"""Generators: one protocol, several backends (transformers, OpenAI-compatible servers, llama.cpp).

``create_generator`` picks the configured backend. Importing this package loads no model and no
heavy library (torch, transformers, openai, llama_cpp); each backend module is imported when it
is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError
from rag_app.generation.base import Completion, Generator, Message

if TYPE_CHECKING:
    from rag_app.settings import Settings

__all__ = [
    "BACKENDS",
    "Completion",
    "Generator",
    "Message",
    "adapter_folder",
    "create_generator",
    "packaged_adapter",
    "promoted_adapter",
]


def _transformers(settings: Settings) -> Generator:
    from rag_app.generation.transformers_backend import TransformersGenerator

    return TransformersGenerator(settings)


def _openai(settings: Settings) -> Generator:
    from rag_app.generation.openai_backend import OpenAIGenerator

    return OpenAIGenerator(settings)


def _llamacpp(settings: Settings) -> Generator:
    from rag_app.generation.llamacpp_backend import LlamaCppGenerator

    return LlamaCppGenerator(settings)


BACKENDS: dict[str, Callable[[Settings], Generator]] = {
    "transformers": _transformers,
    "openai": _openai,
    "llamacpp": _llamacpp,
}
"""``generator.backend`` -> factory."""


def create_generator(settings: Settings) -> Generator:
    """The generator named by ``settings.generator`` (cheap: weights load on first use)."""
    factory = BACKENDS.get(settings.generator.backend)
    if factory is None:
        choices = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"generator.backend: {settings.generator.backend!r} is not one of {choices}")
    return factory(settings)


PACKAGED_ADAPTERS: dict[str, str] = {"Qwen2.5-Coder-0.5B-Instruct": "qwen2.5-coder-0.5b-reader"}
"""Packaged model -> the folder under ``rag_app/adapters`` of its reader adapter (``finetune/reader.py``)."""
PACKAGED = "packaged"


def packaged_adapter(model: str) -> Path | None:
    """The reader adapter shipped for packaged model ``model`` (aliases accepted), or ``None``."""
    from rag_app.models import ALIASES

    name = PACKAGED_ADAPTERS.get(ALIASES.get(model, model))
    if name is None:
        return None
    folder = Path(__file__).resolve().parents[1] / "adapters" / name
    return folder if (folder / "adapter_config.json").is_file() else None


def adapter_folder(settings: Settings) -> Path | None:
    """The LoRA adapter folder named by ``generator.adapter`` (``packaged``: rag-app's reader adapter
    for the packaged model, if it has one; ``promoted``: the registry's), or ``None``."""
    name = settings.generator.adapter
    if not name:
        return None
    if name == PACKAGED:
        return packaged_adapter(settings.generator.model)
    if name == "promoted":
        return promoted_adapter(settings)
    folder = Path(name).expanduser()
    if (folder / "adapter_config.json").is_file():
        return folder.resolve()
    registered = _registered_adapter(settings, name)
    if registered is not None:
        return Path(registered)
    raise ConfigError(
        f"generator.adapter: {folder} is neither a LoRA adapter folder (no adapter_config.json) nor "
        "a registered adapter; set it to an adapter folder, a registered name, 'promoted', or unset it"
    )


def _registry() -> Any:
    """``finetune.registry``, imported lazily; ``None`` when the finetune package is not installed."""
    try:
        return importlib.import_module("finetune.registry")
    except ModuleNotFoundError as exc:
        if exc.name not in {"finetune", "finetune.registry"}:
            raise
        return None


def _registered_adapter(settings: Settings, name: str) -> Path | None:
    """The adapter registered as ``name`` (none without a registry)."""
    registry = _registry()
    folder = registry.registered_adapter(settings, name) if registry is not None else None
    return Path(folder) if folder is not None else None


def promoted_adapter(settings: Settings) -> Path:
    """The promoted adapter's folder: ``finetune.registry.promoted_adapter(settings)``, imported lazily."""
    registry = _registry()
    if registry is None:
        raise ConfigError(
            "generator.adapter = 'promoted', but there is no adapter registry yet "
            "(finetune.registry is not installed): set generator.adapter to an adapter folder"
        )
    folder = registry.promoted_adapter(settings)
    if folder is None:
        raise ConfigError(
            "generator.adapter = 'promoted', but no adapter is promoted in the registry: "
            "promote one, or set generator.adapter to an adapter folder"
        )
    return Path(folder)
