"""The RAGAS judge: the :class:`Judge` protocol and its two backends, picked from :data:`JUDGES`.

``openai``: ``ChatOpenAI`` on its own ``httpx`` client, for any OpenAI-compatible endpoint
(``eval.judge_base_url``); ``local``: our generator in process as a LangChain chat model
(``eval.judge_local``). Both sit in ragas's ``LangchainLLMWrapper`` with per-request ``n`` and
temperature, call counting and a breaker for a dead endpoint. Also here: the callback that records
why a metric failed; see :mod:`eval.ragas_metrics` for the quirks handled."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from eval.ragas_metrics.offline import _tiktoken_cached, _word_token_ids

if TYPE_CHECKING:
    from rag_app.generation.base import Generator
    from rag_app.settings import EvalSettings

JUDGE_BREAKER_AFTER = 3
"""Consecutive connection errors / timeouts after which the judge is taken as down."""


class JudgeUnavailable(RuntimeError):
    """The judge failed to answer several calls in a row; later calls fail at once."""


class Judge(Protocol):
    """The LLM RAGAS's judged metrics call (a ragas ``BaseRagasLLM``), with what the report needs."""

    url: str
    """Where the judge runs (an endpoint URL, or ``local generator <model id>``), for messages."""
    calls: int
    """Completions requested so far."""
    errors: dict[str, int]
    """Connection errors and timeouts by description."""
    down: str | None
    """Why the judge is taken as down (the breaker tripped), or None."""

    async def agenerate_text(
        self,
        prompt: Any,
        n: int = 1,
        temperature: float | None = 0.01,
        stop: list[str] | None = None,
        callbacks: Any = None,
    ) -> Any:
        """``n`` completions of ``prompt`` (ragas's ``LLMResult``)."""
        ...

    async def aclose(self) -> None:
        """Release what the judge holds (its HTTP client); called once scoring is done."""
        ...


def _openai_judge(settings: EvalSettings, generator: Generator | None = None) -> Judge:
    """``ChatOpenAI`` on the OpenAI-compatible endpoint of ``settings`` (``eval.judge_base_url``)."""
    import httpx
    from langchain_openai import ChatOpenAI

    client = httpx.AsyncClient(timeout=settings.judge_timeout_s)
    extra: dict[str, Any] = {}
    if not (_tiktoken_cached("o200k_base") and _tiktoken_cached("cl100k_base")):
        extra["custom_get_token_ids"] = _word_token_ids
    chat = ChatOpenAI(
        base_url=settings.judge_base_url,
        model=settings.judge_model,
        api_key=settings.judge_api_key or "not-needed",
        timeout=settings.judge_timeout_s,
        max_retries=1,
        temperature=0,
        # our own client: langchain-openai's default one is shared per URL and keeps connections
        # bound to the event loop of its first use ("Event loop is closed" on the next run)
        http_async_client=client,
        **extra,
    )
    judge: Judge = _call_quietly(
        _judge_classes()["openai"], chat, settings.judge_timeout_s, str(settings.judge_base_url), client
    )
    return judge


def _local_judge(settings: EvalSettings, generator: Generator | None = None) -> Judge:
    """``generator`` in process, as a LangChain chat model (``eval.judge_local``)."""
    from rag_app.integrations.langchain import GeneratorChatModel

    if generator is None:
        raise ValueError("the local judge needs a generator")
    local = GeneratorChatModel(generator=generator, max_new_tokens=settings.judge_max_new_tokens)
    name = f"local generator {getattr(generator, 'model_id', '')}"
    judge: Judge = _call_quietly(_judge_classes()["local"], local, settings.judge_timeout_s, name)
    return judge


JUDGES: dict[str, Callable[[EvalSettings, Generator | None], Judge]] = {
    "openai": _openai_judge,
    "local": _local_judge,
}
"""Judge backend -> its factory: ``openai`` for an endpoint, ``local`` for a generator in process."""


def _make_judge(settings: EvalSettings, generator: Generator | None = None) -> Judge:
    """The judge: ``generator`` in process when given, else the endpoint of ``settings``."""
    return JUDGES["local" if generator is not None else "openai"](settings, generator)


@functools.cache
def _judge_classes() -> dict[str, type]:
    import openai
    from ragas.llms.base import LangchainLLMWrapper

    class _RagasJudge(LangchainLLMWrapper):
        """ragas's LangChain wrapper with per-request ``n``/temperature, call counting and a breaker."""

        def __init__(self, chat: Any, request_timeout: float, url: str) -> None:
            super().__init__(chat, bypass_n=True)
            self.request_timeout = request_timeout
            self.url = url
            self.calls = 0
            self.errors: dict[str, int] = {}
            self.down: str | None = None
            self._failures_in_row = 0
            self._lock = threading.Lock()
            self.set_run_config(self.run_config)

        def set_run_config(self, run_config: Any) -> None:
            super().set_run_config(run_config)  # sets the request timeout to the job timeout
            has_timeout = hasattr(self.langchain_llm, "request_timeout")  # ChatOpenAI; not a local model
            if getattr(self, "request_timeout", None) is not None and has_timeout:
                setattr(self.langchain_llm, "request_timeout", self.request_timeout)  # noqa: B010

        async def agenerate_text(
            self,
            prompt: Any,
            n: int = 1,
            temperature: float | None = 0.01,
            stop: list[str] | None = None,
            callbacks: Any = None,
        ) -> Any:
            if self.down is not None:
                raise JudgeUnavailable(self.down)
            if temperature is None:
                temperature = self.get_temperature(n)
            with self._lock:
                self.calls += n
            try:
                result = await self.langchain_llm.agenerate_prompt(
                    prompts=[prompt] * n, stop=stop, callbacks=callbacks, temperature=temperature
                )
            except (openai.APIConnectionError, openai.APITimeoutError) as error:
                self._failed(error)
                raise
            with self._lock:
                self._failures_in_row = 0
            result.generations = [[g[0] for g in result.generations]]
            return result

        async def aclose(self) -> None:
            return None

        def _failed(self, error: Exception) -> None:
            with self._lock:
                what = _describe(error)
                self.errors[what] = self.errors.get(what, 0) + 1
                self._failures_in_row += 1
                if self._failures_in_row >= JUDGE_BREAKER_AFTER and self.down is None:
                    self.down = f"judge unreachable at {self.url}: {what}"

    class OpenAIJudge(_RagasJudge):
        """The judge behind an OpenAI-compatible endpoint, on its own ``httpx`` client."""

        def __init__(self, chat: Any, request_timeout: float, url: str, http_client: Any) -> None:
            super().__init__(chat, request_timeout, url)
            self.http_client = http_client

        async def aclose(self) -> None:
            await self.http_client.aclose()

    class LocalJudge(_RagasJudge):
        """The judge as our generator in process: nothing to close."""

    return {"openai": OpenAIJudge, "local": LocalJudge}


def _call_quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn`` without the deprecation warnings ragas 0.4 gives for ``evaluate`` and its wrappers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args, **kwargs)


@functools.cache
def _recorder_class() -> type:
    from langchain_core.callbacks import BaseCallbackHandler

    class ErrorRecorder(BaseCallbackHandler):
        """Why each metric failed on each row: ragas reports the exception on the metric's chain."""

        run_inline = True

        def __init__(self) -> None:
            self.runs: dict[Any, tuple[str, Any, dict[str, Any]]] = {}
            self.errors: dict[tuple[int, str], str] = {}
            self._lock = threading.Lock()

        def on_chain_start(
            self,
            serialized: dict[str, Any] | None,
            inputs: Any,
            *,
            run_id: Any,
            parent_run_id: Any = None,
            metadata: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            with self._lock:
                self.runs[run_id] = ((serialized or {}).get("name", ""), parent_run_id, dict(metadata or {}))

        def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            with self._lock:
                name, parent, _ = self.runs.get(run_id, ("", None, {}))
                if parent not in self.runs:
                    return
                parent_meta = self.runs[parent][2]
                if _chain_type(parent_meta) != "row" or "row_index" not in parent_meta:
                    return
                self.errors.setdefault((int(parent_meta["row_index"]), name), _describe(error))

    return ErrorRecorder


def _chain_type(metadata: dict[str, Any]) -> str:
    kind = metadata.get("type")
    return str(getattr(kind, "value", kind))


def _describe(error: BaseException) -> str:
    """``Type: message``, with the root cause of a wrapped error (``Connection refused``)."""
    message = " ".join(str(error).split())
    if isinstance(error, TimeoutError) and not message:
        message = "no answer within the time limit"
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    cause = error.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {' '.join(str(cause).split())})"
    return text
