"""Generators: one protocol, several backends (transformers, OpenAI-compatible servers, llama.cpp).

``create_generator`` picks the configured backend. Importing this package loads no model and no
heavy library (torch, transformers, openai, llama_cpp); each backend module is imported when it
is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    "adapter_verdict",
    "create_generator",
    "default_adapter",
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
DEFAULT_ADAPTERS: dict[str, str] = {"Qwen2.5-Coder-0.5B-Instruct": "qwen2.5-coder-0.5b-loop"}
"""Packaged model -> the folder under ``rag_app/adapters`` of the adapter the retraining loop
promoted for it (``bench/loop.py``), loaded by ``generator.adapter = "auto"`` when the user's own
registry promotes none; a model without a shipped folder runs bare."""
PACKAGED = "packaged"
AUTO = "auto"
PROMOTED = "promoted"
BARE = ("", "none")
"""``generator.adapter`` values meaning the bare model (as does unset)."""


def _shipped(table: dict[str, str], model: str) -> Path | None:
    from rag_app.models import ALIASES

    name = table.get(ALIASES.get(model, model))
    if name is None:
        return None
    folder = Path(__file__).resolve().parents[1] / "adapters" / name
    return folder if (folder / "adapter_config.json").is_file() else None


def packaged_adapter(model: str) -> Path | None:
    """The reader adapter shipped for packaged model ``model`` (aliases accepted), or ``None``."""
    return _shipped(PACKAGED_ADAPTERS, model)


def default_adapter(model: str) -> Path | None:
    """The loop-promoted adapter shipped for packaged model ``model``, or ``None``."""
    return _shipped(DEFAULT_ADAPTERS, model)


def adapter_folder(settings: Settings) -> Path | None:
    """The LoRA adapter folder named by ``generator.adapter``, or ``None`` (the bare model).

    ``auto`` (the default): the adapter promoted in ``<data_dir>``'s registry when it was trained on
    ``generator.model``, else the one the loop promoted for the packaged model (shipped), else none.
    ``promoted``: the registry's, or an error. ``packaged``: the reader adapter. A folder, or the
    name of a registered adapter. The registry is read from what it publishes
    (:mod:`rag_app.live_adapters`), so the runtime never imports the training package.
    """
    from rag_app import live_adapters

    name = settings.generator.adapter
    model = settings.generator.model
    if name is None or name.strip().lower() in BARE:
        return None
    if name == AUTO:
        return live_adapters.auto_adapter(settings.data_dir, model) or default_adapter(model)
    if name == PACKAGED:
        return packaged_adapter(model)
    if name == PROMOTED:
        return promoted_adapter(settings)
    folder = Path(name).expanduser()
    if (folder / "adapter_config.json").is_file():
        return folder.resolve()
    registered = live_adapters.registered(settings.data_dir, name)
    if registered is not None:
        return live_adapters.check_generator(registered, model, "generator.adapter")
    raise ConfigError(
        f"generator.adapter: {folder} is neither a LoRA adapter folder (no adapter_config.json) nor "
        "a registered adapter; set it to an adapter folder, a registered name, 'promoted', 'auto' or 'none'"
    )


VERDICT_FILE = "verdict-model.json"
"""An adapter folder's own verdict model (:mod:`rag_app.guard.verdict`), fitted on that adapter's
answers (its verifier and confidence are calibrated per model)."""


def adapter_verdict(settings: Settings) -> Path | None:
    """The verdict model shipped in the folder of the adapter ``generator.adapter`` names, or ``None``."""
    folder = adapter_folder(settings)
    if folder is None or not (folder / VERDICT_FILE).is_file():
        return None
    return folder / VERDICT_FILE


def promoted_adapter(settings: Settings) -> Path:
    """The promoted adapter's folder (``generator.adapter = "promoted"``), or a clear error."""
    from rag_app import live_adapters

    current = live_adapters.promoted(settings.data_dir)
    if current is None:
        raise ConfigError(
            "generator.adapter = 'promoted', but no adapter is promoted in the registry "
            f"({live_adapters.live_path(settings.data_dir).parent}): promote one, or set "
            "generator.adapter to 'auto' or an adapter folder"
        )
    return live_adapters.check_generator(current, settings.generator.model, "the promoted adapter")
