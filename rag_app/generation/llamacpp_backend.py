"""A generator on a GGUF file with llama.cpp (``pip install 'rag-app[llamacpp]'``; builds from source).

The fastest CPU path for the packaged SmolLM2-135M-Instruct: it runs the quantized GGUF as it is
(no conversion), several times faster than transformers in float32 (``bench/generation.py``).
The chat template stored in the GGUF formats the messages. Repetition control matches the
transformers backend: ``repetition_penalty`` and ``no_repeat_ngram_size`` count the answer's
tokens only (a logits processor; llama.cpp's own penalty would count the prompt), and the
:class:`~rag_app.generation.repetition.LoopDetector` ends loops. LoRA adapters are not loaded
here: use the ``transformers`` backend, or vLLM behind the ``openai`` backend.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError, GeneratorError
from rag_app.generation.base import Completion, Message
from rag_app.generation.repetition import LoopDetector, TextControl, controlled_stream

if TYPE_CHECKING:
    import numpy as np

    from rag_app.settings import Settings

INSTALL_HINT = "pip install 'rag-app[llamacpp]' (llama-cpp-python compiles from source: about 7 minutes)"


class LlamaCppGenerator:
    """llama-cpp-python on ``generator.model`` (the packaged GGUF, or a local ``.gguf`` file)."""

    def __init__(self, settings: Settings, *, gguf: Path | None = None) -> None:
        from rag_app.models import resolve_generator

        g = settings.generator
        if g.adapter and g.adapter != "auto" and g.adapter.strip().lower() not in ("", "none"):
            raise ConfigError(
                f'generator.adapter = {g.adapter!r} is not supported with generator.backend = "llamacpp": '
                'use backend "transformers" (or vLLM behind "openai") for LoRA adapters'
            )
        if gguf is None:
            resolved = resolve_generator(g.model, settings)
            if resolved.path is None or resolved.path.suffix.lower() != ".gguf":
                raise ConfigError(
                    f'generator.backend = "llamacpp" needs a GGUF file, but generator.model {g.model!r} '
                    "is not one: set generator.model to a .gguf file or to the packaged SmolLM2-135M-Instruct"
                )
            gguf = resolved.path
            self.model_id: str = resolved.name
        else:
            self.model_id = gguf.stem
        self.adapter_id: str | None = None
        self.settings = settings
        self.gguf = gguf
        self._llm: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Open the GGUF file now (idempotent)."""
        if self._llm is not None:
            return
        with self._lock:
            if self._llm is None:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    needs = 'generator.backend = "llamacpp" needs llama-cpp-python'
                    raise ConfigError(f"{needs}: {INSTALL_HINT}") from None
                g = self.settings.generator
                self._llm = Llama(
                    model_path=str(self.gguf),
                    n_ctx=max(4096, g.context_tokens + g.max_new_tokens + 1024),
                    n_threads=g.threads or os.cpu_count() or 1,
                    n_threads_batch=g.threads or os.cpu_count() or 1,
                    seed=0,
                    verbose=False,
                )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the GGUF's own tokenizer, without special tokens."""
        self.load()
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """The whole answer: :meth:`stream` collected, with token counts and timings."""
        t0 = time.perf_counter()
        run = _Run()
        pieces = list(self._stream(messages, max_new_tokens, temperature, stop, run))
        total = time.perf_counter() - t0
        text = "".join(pieces)
        reason = run.reason or "stop"
        first = (run.first_token_at or time.perf_counter()) - t0
        n = run.completion_tokens
        rate = (n - 1) / (total - first) if n > 1 and total > first else 0.0
        return Completion(
            text=text,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            finish_reason=reason,
            model=self.model_id,
            adapter=None,
            timings={"first_token": first, "total": total, "tokens_per_s": rate},
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Text pieces as llama.cpp decodes them, held back where a stop string or loop cut may follow."""
        return self._stream(messages, max_new_tokens, temperature, stop, _Run())

    def _stream(
        self,
        messages: Sequence[Message],
        max_new_tokens: int,
        temperature: float,
        stop: Sequence[str],
        run: _Run,
    ) -> Iterator[str]:
        self.load()
        g = self.settings.generator
        processor = AnswerPenalties(g.repetition_penalty, g.no_repeat_ngram_size, run)
        control = TextControl(stop, LoopDetector())
        try:
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                max_tokens=max_new_tokens,
                temperature=temperature,
                stop=list(stop) or None,
                repeat_penalty=1.0,
                logits_processor=[processor],
                stream=True,
            )
        except ValueError as exc:  # a prompt longer than the context
            raise GeneratorError(f"llama.cpp could not start on {self.gguf.name}: {exc}") from exc
        try:
            yield from controlled_stream(_contents(chunks, run), control)
            _, cut = control.finish(run.text)
            run.reason = cut or run.reason
        finally:
            chunks.close()


class _Run:
    """What one request measured: token counts, first-token time, raw text and finish reason."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.first_token_at: float | None = None
        self.text = ""
        self.reason: str | None = None


def _contents(chunks: Iterator[dict[str, Any]], run: _Run) -> Iterator[str]:
    for chunk in chunks:
        choice = chunk["choices"][0]
        content = choice["delta"].get("content") or ""
        if content:
            run.text += content
            yield content
        if choice.get("finish_reason"):
            run.reason = "length" if choice["finish_reason"] == "length" else "stop"


class AnswerPenalties:
    """A llama.cpp logits processor: repetition penalty and no-repeat n-grams over the answer's tokens only.

    The first call sees the prompt alone, so its length marks where the answer starts.
    """

    def __init__(self, repetition_penalty: float, no_repeat_ngram_size: int, run: _Run) -> None:
        self.penalty = repetition_penalty
        self.n = no_repeat_ngram_size
        self.run = run
        self.start: int | None = None
        self._seen: dict[tuple[int, ...], set[int]] = {}
        self._done = max(no_repeat_ngram_size - 1, 0)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        import numpy as np

        if self.start is None:  # the prompt is evaluated: the first token is being sampled
            self.start = len(input_ids)
            self.run.prompt_tokens = self.start
            self.run.first_token_at = time.perf_counter()
        self.run.completion_tokens += 1
        answer = input_ids[self.start :].tolist()
        if answer and self.penalty != 1.0:
            seen = np.unique(np.asarray(answer))
            values = scores[seen]
            scores[seen] = np.where(values < 0, values * self.penalty, values / self.penalty)
        if self.n > 0:
            for end in range(self._done, len(answer)):
                self._seen.setdefault(tuple(answer[end - self.n + 1 : end]), set()).add(answer[end])
            self._done = max(self._done, len(answer))
            if len(answer) >= self.n - 1:
                banned = self._seen.get(tuple(answer[len(answer) - self.n + 1 :]))
                if banned:
                    scores[list(banned)] = -np.inf
        return scores
