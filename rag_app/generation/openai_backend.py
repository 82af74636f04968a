"""A generator behind any OpenAI-compatible server: vLLM (with LoRA adapters), llama.cpp server, a hosted API.

Needs the ``openai`` client (``pip install 'rag-app[openai]'``). The request's model name is
``generator.adapter`` when set (vLLM serves each LoRA adapter under its own name, see
``rag-app serve-llm``), else ``generator.model``. Only ``max_tokens``, ``temperature`` and
``stop`` are sent: servers' repetition penalties (vLLM's ``repetition_penalty``) count the
prompt too, which keeps a model from copying its sources. Loops are caught on this side by the
same :class:`~rag_app.generation.repetition.LoopDetector` as the local backends, which closes
the stream (vLLM then aborts the request).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rag_app.errors import ConfigError, GeneratorError
from rag_app.generation.base import Completion, Message
from rag_app.generation.repetition import LoopDetector, TextControl, controlled_stream

if TYPE_CHECKING:
    from rag_app.settings import Settings

DEFAULT_API_KEY = "not-needed"
"""Sent when ``generator.api_key`` is unset: local servers accept any key, the client wants one."""


def _served_adapter(settings: Settings) -> str | None:
    """The adapter's served name: ``packaged`` is the packaged reader adapter's folder name (what
    ``rag-app serve-llm`` serves it as) for a packaged model, and no adapter for any other model;
    ``auto`` is the name of the adapter it resolves to here (``rag-app serve-llm`` serves it under
    that name), or none."""
    adapter = settings.generator.adapter
    if adapter is None or adapter.strip().lower() in ("", "none"):
        return None
    if adapter == "auto":  # the promoted adapter when this data dir has one: serve-llm serves it so
        from rag_app.generation import adapter_folder

        folder = adapter_folder(settings)
        return folder.name if folder is not None else None
    if adapter == "packaged":
        from rag_app.generation import packaged_adapter

        folder = packaged_adapter(settings.generator.model)
        return folder.name if folder is not None else None
    return adapter


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server at ``generator.base_url``."""

    def __init__(self, settings: Settings) -> None:
        g = settings.generator
        if not g.base_url:
            raise ConfigError(
                'generator.backend = "openai" needs generator.base_url, e.g. "http://127.0.0.1:8000/v1" '
                "(RAG_APP_GENERATOR__BASE_URL)"
            )
        self.settings = settings
        self.base_url = g.base_url.rstrip("/")
        self.model_id: str = g.model
        self.adapter_id: str | None = _served_adapter(settings)
        self.served_name = self.adapter_id or g.model
        """The model name sent with each request."""
        self._client: Any = None
        self._tokens: Any = None

    def _openai(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError(
                    "generator.backend = \"openai\" needs the openai client: pip install 'rag-app[openai]'"
                ) from None
            g = self.settings.generator
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=g.api_key or DEFAULT_API_KEY,
                timeout=g.timeout_s,
                max_retries=1,
            )
        return self._client

    def _request(
        self, messages: Sequence[Message], max_new_tokens: int, temperature: float, stop: Sequence[str]
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.served_name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_new_tokens,
            "temperature": temperature,
        }
        if stop:
            request["stop"] = list(stop)
        return request

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """One chat completion; a loop at the end of the text is trimmed (``finish_reason="repetition"``)."""
        client = self._openai()
        request = self._request(messages, max_new_tokens, temperature, stop)
        t0 = time.perf_counter()
        try:
            response = client.chat.completions.create(**request)
        except Exception as exc:
            self._raise(exc)
        total = time.perf_counter() - t0
        if not response.choices:
            raise GeneratorError(f"generator server at {self.base_url} answered without a choice")
        choice = response.choices[0]
        text, reason = TextControl(stop, LoopDetector()).finish(choice.message.content or "")
        usage = response.usage
        completion_tokens = usage.completion_tokens if usage else self.count_tokens(text)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=completion_tokens,
            finish_reason=reason or ("length" if choice.finish_reason == "length" else "stop"),
            model=self.model_id,
            adapter=self.adapter_id,
            timings={
                "first_token": total,
                "total": total,
                "tokens_per_s": completion_tokens / total if total > 0 else 0.0,
            },
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Text pieces as the server sends them (``stream=True``), held back where a cut may follow."""
        client = self._openai()
        request = self._request(messages, max_new_tokens, temperature, stop)
        try:
            response = client.chat.completions.create(**request, stream=True)
        except Exception as exc:
            self._raise(exc)
        try:
            yield from controlled_stream(self._deltas(response), TextControl(stop, LoopDetector()))
        finally:
            response.close()

    def verify(self, messages: Sequence[Message], *, completion: Completion | None = None) -> float:
        """P(Yes) from the server's top log-probabilities of one token after ``messages``.

        The server reads the prompt again (vLLM's prefix cache makes that cheap); a server that
        returns no log-probabilities raises :class:`GeneratorError` (the answerer then goes on
        without the verifier).
        """
        import math

        client = self._openai()
        request = self._request(messages, 1, 0.0, ())
        try:
            response = client.chat.completions.create(**request, logprobs=True, top_logprobs=10)
        except Exception as exc:
            self._raise(exc)
        choice = response.choices[0] if response.choices else None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if not content:
            raise GeneratorError(f"generator server at {self.base_url} returned no logprobs for the verifier")
        yes = no = 0.0
        for top in content[0].top_logprobs or []:
            word = top.token.strip().lower()
            if word == "yes":
                yes += math.exp(top.logprob)
            elif word == "no":
                no += math.exp(top.logprob)
        return yes / (yes + no) if yes + no > 0 else 0.5

    def _deltas(self, response: Any) -> Iterator[str]:
        try:
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except Exception as exc:
            self._raise(exc)

    def _raise(self, exc: Exception) -> NoReturn:
        """Turn the client's errors into one :class:`GeneratorError` line naming the URL and the setting."""
        import httpx
        import openai

        url = self.base_url
        if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
            raise GeneratorError(
                f"generator server at {url} did not answer within {self.settings.generator.timeout_s:g} s; "
                "raise generator.timeout_s or check the server"
            ) from exc
        if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
            cause = _root_cause(exc)
            raise GeneratorError(
                f"generator server at {url} is not reachable ({cause}); "
                "start it with `rag-app serve-llm` or fix generator.base_url"
            ) from exc
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            raise GeneratorError(
                f"generator server at {url} refused the key (HTTP {exc.status_code}); "
                "set generator.api_key (RAG_APP_GENERATOR__API_KEY)"
            ) from exc
        if isinstance(exc, openai.NotFoundError):
            raise GeneratorError(
                f"generator server at {url} does not serve model {self.served_name!r} (HTTP 404); "
                "fix generator.model or generator.adapter (the served model name) or generator.base_url"
            ) from exc
        if isinstance(exc, openai.APIStatusError):
            raise GeneratorError(
                f"generator server at {url} answered HTTP {exc.status_code}: {_short(exc.message)}"
            ) from exc
        if isinstance(exc, openai.OpenAIError):
            raise GeneratorError(f"generator server at {url} answered badly: {_short(str(exc))}") from exc
        raise exc

    def count_tokens(self, text: str) -> int:
        """An estimate that never downloads and never converts a model.

        The exact count when a local ``tokenizer.json`` for ``generator.model`` is at hand (a local
        model folder, or the packaged model once converted into the cache), else ``ceil(chars / 4)``.
        """
        if self._tokens is None:
            self._tokens = _local_tokenizer(self.settings) or False
        if self._tokens is False:
            return math.ceil(len(text) / 4)
        return len(self._tokens.encode(text, add_special_tokens=False).ids)


def _local_tokenizer(settings: Settings) -> Any:
    """A ``tokenizers.Tokenizer`` for ``generator.model`` from local files only, or ``None``."""
    from rag_app.errors import ModelNotFoundError
    from rag_app.models import converted_folder, resolve_generator

    try:
        resolved = resolve_generator(settings.generator.model, settings)
    except ModelNotFoundError:
        return None
    path: Path | None = resolved.path
    if path is not None and path.is_file():  # a GGUF file: its converted folder, if converted already
        path = converted_folder(path, settings.cache_dir)
    if path is None or not (path / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json"))


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
        return "unknown host"
    return _short(str(exc)) or type(exc).__name__


def _short(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
