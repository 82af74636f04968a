"""ragas kept off the network: telemetry off, and tiktoken never downloading (a local word
tokenizer stands in when its encodings are not cached); see :mod:`eval.ragas_metrics`."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

_TIKTOKEN_FILES = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _prepare_offline() -> None:
    """Telemetry off, and tiktoken kept from downloading, before and after importing ragas.

    ``TIKTOKEN_CACHE_DIR`` is left alone: other libraries read it too (LlamaIndex uses its own
    bundled encodings only while it is unset). When the encodings ragas would load are not in
    tiktoken's cache, ragas's default tokenizer becomes a local word tokenizer instead.
    """
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from ragas import _analytics, tokenizers

    _analytics.do_not_track.cache_clear()  # it is cached: reread the variable set above
    if not _tiktoken_cached("o200k_base") and tokenizers._default_tokenizer is None:
        tokenizers._default_tokenizer = _word_tokenizer()


def _tiktoken_cached(encoding: str) -> bool:
    """Whether tiktoken would load ``encoding`` from its cache folder (no download)."""
    folder = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or str(Path(tempfile.gettempdir()) / "data-gym-cache")  # tiktoken's default
    )
    key = hashlib.sha1(_TIKTOKEN_FILES[encoding].encode()).hexdigest()
    return (Path(folder) / key).is_file()


@functools.cache
def _word_tokenizer_class() -> type:
    from ragas.tokenizers import BaseTokenizer

    class WordTokenizer(BaseTokenizer):
        """Words and punctuation as tokens, ids assigned on first sight (no vocabulary file)."""

        def __init__(self) -> None:
            self._ids: dict[str, int] = {}
            self._words: list[str] = []
            self._lock = threading.Lock()

        def encode(self, text: str) -> list[int]:
            with self._lock:
                out = []
                for word in _word_ids_pattern().findall(text):
                    if word not in self._ids:
                        self._ids[word] = len(self._words)
                        self._words.append(word)
                    out.append(self._ids[word])
                return out

        def decode(self, tokens: list[int]) -> str:
            return " ".join(self._words[t] for t in tokens if 0 <= t < len(self._words))

    return WordTokenizer


def _word_tokenizer() -> Any:
    return _word_tokenizer_class()()


@functools.cache
def _word_ids_pattern() -> re.Pattern[str]:
    return re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _word_token_ids(text: str) -> list[int]:
    """A stand-in for tiktoken's token ids: one per word or punctuation mark."""
    return [len(w) for w in _word_ids_pattern().findall(text)]
