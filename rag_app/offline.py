"""Keep Hugging Face libraries off the network unless the settings allow it.

Called by model-loading code right before it imports or uses transformers, never at import time.
"""

from __future__ import annotations

import os
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
"""Variables set (unless the user already set them) when the network is not allowed."""


def enforce_offline(allow_network: bool) -> None:
    """With ``allow_network`` false, set :data:`OFFLINE_ENV`; a value the user set explicitly wins.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, at import; if it is already imported,
    its flag is updated to match the environment.
    """
    if allow_network:
        return
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and os.environ["HF_HUB_OFFLINE"].strip().upper() in {"1", "ON", "YES", "TRUE"}:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 (read once at import)
