"""The language of a question, so the answer and the app's own messages can use it.

Detection is py3langid (a naive Bayes model over byte n-grams, bundled in the wheel, no network),
restricted to the languages listed in :data:`LANGUAGES`. A short or ambiguous question ("When?")
counts as English unless the model is confident, since most short follow-ups in a chat are.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "sv": "Swedish",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
}
"""ISO 639-1 code -> English name (the name goes into the prompt: "Answer in Spanish.")."""
DEFAULT = "en"
MIN_CONFIDENCE = 0.8
"""Below this probability the question is taken as English."""

_lock = threading.Lock()


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def detect_language(text: str) -> str:
    """The ISO code of ``text``'s language among :data:`LANGUAGES`; English when unsure."""
    text = text.strip()
    if len(text) < 4:
        return DEFAULT
    with _lock:  # the identifier is built once; classify itself is pure
        identifier = _identifier()
    code, probability = identifier.classify(text)
    if code == DEFAULT or probability < MIN_CONFIDENCE:
        return DEFAULT
    return str(code)


def language_name(code: str) -> str:
    return LANGUAGES.get(code, LANGUAGES[DEFAULT])
