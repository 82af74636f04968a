"""The default generator: a local causal LM run with transformers (CPU or GPU), optionally with LoRA.

The packaged SmolLM2-135M-Instruct GGUF is converted once into a safetensors folder
(:func:`rag_app.models.generator_folder`); a local model folder is loaded as it is. The model's
own chat template formats the messages.

Repetition control (small models loop):

* ``repetition_penalty`` and ``no_repeat_ngram_size`` apply to the *answer's* tokens only.
  transformers' built-in versions also count the prompt, which forbids copying the sources:
  measured with SmolLM2-135M, "When was the Treaty of Westphalia signed?" over a source that
  says 1648 is answered "20 January 1713" with them, and correctly with answer-only penalties.
* a :class:`~rag_app.generation.repetition.LoopDetector` stops decoding when the answer's last
  words repeat the words just before them, trims the repeats and reports ``"repetition"``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from rag_app.errors import ConfigError, GeneratorError
from rag_app.generation import adapter_folder
from rag_app.generation.base import Completion, Message
from rag_app.generation.repetition import LoopDetector, TextControl, controlled_stream
from rag_app.models import generator_folder, resolve_generator
from rag_app.offline import enforce_offline

if TYPE_CHECKING:
    from rag_app.settings import Settings

log = logging.getLogger(__name__)


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bfloat16 dot-product instructions (AVX512-BF16 or AMX), where oneDNN runs
    bfloat16 matrix products natively (Linux: read from ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


AUTO_CPU_DTYPE: Literal["float32", "bfloat16"] = "float32"
"""What ``dtype = "auto"`` loads on a CPU without fast bfloat16. On CPUs with AVX512-BF16 or AMX,
``auto`` loads bfloat16: the 0.5B generator's prefill of a 1,185-token prompt takes 4.7 s against
10.9 s in float32 on two cores (greedy answers can differ slightly from float32's: for SmolLM2-135M
2 of 10 fixed RAG prompts did, ``bench/results/generation.json``). On a GPU ``auto`` loads
bfloat16 when the GPU supports it."""


class TransformersGenerator:
    """A local causal LM with transformers; weights load on first use (or :meth:`load`).

    ``folder`` overrides ``settings.generator.model`` with an already-resolved model folder
    (tests, benchmarks); ``dtype`` overrides ``settings.generator.dtype``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        folder: Path | None = None,
        dtype: Literal["auto", "float32", "bfloat16"] | None = None,
    ) -> None:
        self.settings = settings
        g = settings.generator
        self._folder = folder
        self.model_id: str = folder.name if folder is not None else resolve_generator(g.model, settings).name
        self._adapter = adapter_folder(settings)
        self.adapter_id: str | None = self._adapter.name if self._adapter is not None else None
        self._dtype_name = dtype or g.dtype
        self._lock = threading.Lock()
        self._tok: Any = None
        self._model: Any = None
        self.device = "cpu"
        self.dtype = ""
        """The dtype the model was loaded in (``float32``, ``bfloat16``), once loaded."""
        self._yes_no: tuple[list[int], list[int]] | None = None

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer, weights and adapter now (idempotent and thread-safe)."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = self._load_model()

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        """The loaded model (with its adapter) and tokenizer, for scoring text (eval's perplexity)."""
        self.load()
        return self._model, self._tokenizer()

    def _model_folder(self) -> Path:
        if self._folder is None:  # the packaged GGUF is converted here, once (cached on disk)
            self._folder = generator_folder(self.settings)
        return self._folder

    def _tokenizer(self) -> Any:
        if self._tok is None:
            enforce_offline(self.settings.allow_network)
            tok = AutoTokenizer.from_pretrained(self._model_folder())
            if not getattr(tok, "chat_template", None):
                raise ConfigError(
                    f"generator.model {self.model_id!r} has no chat template: use an instruct (chat) model"
                )
            self._tok = tok
        return self._tok

    def _load_model(self) -> Any:
        threads = self.settings.generator.threads
        if threads:
            torch.set_num_threads(threads)
        tok = self._tokenizer()  # also enforces offline mode
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self._pick_dtype()
        if self.device == "cpu":
            _check_memory(self._model_folder(), dtype, self.model_id)
        t0 = time.perf_counter()
        transformers.utils.logging.disable_progress_bar()  # one line of "Loading weights" per answer is noise
        model: Any = AutoModelForCausalLM.from_pretrained(self._model_folder(), dtype=dtype)
        if self._adapter is not None:
            model = _with_adapter(model, self._adapter)
        model.to(self.device).eval()
        self.dtype = str(dtype).removeprefix("torch.")
        log.info(
            "loaded %s (%s, %s, adapter %s) in %.1f s",
            self.model_id,
            self.dtype,
            self.device,
            self.adapter_id,
            time.perf_counter() - t0,
        )
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return model

    def _pick_dtype(self) -> torch.dtype:
        name = self._dtype_name
        if name == "auto":
            if self.device == "cuda":
                name = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
            else:
                name = "bfloat16" if cpu_has_fast_bf16() else AUTO_CPU_DTYPE
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]

    # -- the Generator protocol ---------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own (local) tokenizer, without special tokens."""
        return len(self._tokenizer()(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """The whole answer; greedy at ``temperature`` 0, cut at ``stop`` strings and loops."""
        t0 = time.perf_counter()
        run = self._start(messages, stop)
        output = self._run(run, max_new_tokens, temperature, streamer=None)
        generated = output.sequences[0, run.prompt_tokens :].tolist()
        text, reason = run.control.finish(self._decode(generated))
        return self._completion(run, output, text, reason, max_new_tokens, t0)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Generator[str, None, Completion | None]:
        """Text pieces as decoded (``TextIteratorStreamer`` in a thread), joining to :meth:`generate`'s text.

        Text that a later stop string or loop could still cut is held back until it is safe.
        Closing the iterator early stops decoding; an error in the decoding thread is re-raised here.
        When exhausted it returns the :class:`Completion` (log-probabilities and KV cache included).
        """
        t0 = time.perf_counter()
        run = self._start(messages, stop)
        streamer = TextIteratorStreamer(self._tokenizer(), skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        outputs: list[Any] = []

        def work() -> None:
            try:
                outputs.append(self._run(run, max_new_tokens, temperature, streamer=streamer))
            except BaseException as exc:  # handed to the consumer below
                errors.append(exc)
                streamer.end()

        def pieces() -> Iterator[str]:
            yield from streamer
            if errors:
                raise errors[0]

        thread = threading.Thread(target=work, name="rag-app-generate", daemon=True)
        thread.start()
        shown: list[str] = []
        try:
            for piece in controlled_stream(pieces(), run.control):
                shown.append(piece)
                yield piece
        finally:
            run.watch.cancel.set()
            thread.join()
        if errors:
            raise errors[0]
        if not outputs:
            return None
        return self._completion(run, outputs[0], "".join(shown), None, max_new_tokens, t0)

    def verify(self, messages: Sequence[Message], *, completion: Completion | None = None) -> float:
        """P(Yes) for the first token after ``messages`` (the verifier question after an answer).

        With the ``completion`` of the answer being judged, its KV cache is reused: only the
        tokens after the common prefix (the rest of the answer turn and the question) are run.
        """
        self.load()
        import torch

        tok = self._tokenizer()
        prompt = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        state = completion.state if completion is not None else None
        cache, start = None, 0
        if isinstance(state, _CacheState) and state.cache is not None:
            start = state.common_prefix(ids[0].tolist())
            if start > 0:
                cache = state.take(start)
        with torch.no_grad():
            out = self._model(
                input_ids=ids[:, start:].to(self.device),
                attention_mask=torch.ones_like(ids).to(self.device),
                cache=cache,
                use_cache=cache is not None,
                logits_to_keep=1,
            )
        probs = torch.softmax(out.logits[0, -1].float(), dim=-1)
        yes, no = self._yes_no_ids()
        p_yes, p_no = float(probs[yes].sum()), float(probs[no].sum())
        return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5

    def _yes_no_ids(self) -> tuple[list[int], list[int]]:
        if self._yes_no is None:
            tok = self._tokenizer()

            def first(words: Sequence[str]) -> list[int]:
                return sorted({tok(w, add_special_tokens=False)["input_ids"][0] for w in words})

            self._yes_no = (first(["Yes", "yes", " Yes", " yes"]), first(["No", "no", " No", " no"]))
        return self._yes_no

    def _completion(
        self, run: _Run, output: Any, text: str, reason: str | None, max_new_tokens: int, t0: float
    ) -> Completion:
        import torch

        total = time.perf_counter() - t0
        sequence = output.sequences[0]
        generated = sequence[run.prompt_tokens :].tolist()
        if reason is None:
            reason = run.control.finish(text)[1]
        if reason is None:
            ended = bool(generated) and generated[-1] in _eos_ids(self._model, self._tokenizer())
            reason = "length" if len(generated) >= max_new_tokens and not ended else "stop"
        logprobs = []
        eos = set(_eos_ids(self._model, self._tokenizer()))
        for step, logits in enumerate(output.logits or ()):
            token = generated[step]
            if token in eos:
                break
            logprobs.append(float(torch.log_softmax(logits[0].float(), dim=-1)[token]))
        first = (run.watch.first_token_at or time.perf_counter()) - t0
        rate = (len(generated) - 1) / (total - first) if len(generated) > 1 and total > first else 0.0
        return Completion(
            text=text,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=len(generated),
            finish_reason=reason,
            model=self.model_id,
            adapter=self.adapter_id,
            timings={"first_token": first, "total": total, "tokens_per_s": rate},
            token_logprobs=logprobs,
            state=_CacheState(sequence.tolist(), getattr(output, "cache", None)),
        )

    # -- internals ----------------------------------------------------------------------------
    def _start(self, messages: Sequence[Message], stop: Sequence[str]) -> _Run:
        self.load()
        tok = self._tokenizer()
        prompt = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        encoded = tok(prompt, add_special_tokens=False, return_tensors="pt")
        control = TextControl(stop, LoopDetector())
        return _Run(encoded, control, _Watch(self, encoded["input_ids"].shape[1], control))

    def _run(self, run: _Run, max_new_tokens: int, temperature: float, streamer: Any) -> Any:
        g = self.settings.generator
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=None,
            top_k=None,
            eos_token_id=_eos_ids(self._model, self._tokenizer()),
            pad_token_id=self._tokenizer().pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        processors = answer_only_penalties(run.prompt_tokens, g.repetition_penalty, g.no_repeat_ngram_size)
        inputs = {k: v.to(self.device) for k, v in run.encoded.items()}
        try:
            return self._model.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([run.watch]),
                streamer=streamer,
            )
        except RuntimeError as exc:  # out of memory, a broken adapter: say which model
            raise GeneratorError(f"generation with {self.model_id!r} failed: {exc}") from exc

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer().decode(ids, skip_special_tokens=True))


class _Watch(StoppingCriteria):
    """A stopping criterion: records the first token's time, stops on a stop string, loop or cancel."""

    def __init__(self, generator: TransformersGenerator, prompt_tokens: int, control: TextControl) -> None:
        self.generator = generator
        self.prompt_tokens = prompt_tokens
        self.control = control
        self.first_token_at: float | None = None
        self.cancel = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        done = self.cancel.is_set()
        if not done:
            answer = input_ids[0, self.prompt_tokens :].tolist()
            done = self.control.should_stop(self.generator._decode(answer))
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _CacheState:
    """The token ids of prompt + answer and the KV cache that covers all but the last of them."""

    def __init__(self, ids: list[int], cache: Any) -> None:
        self.ids = ids
        self.cache = cache

    def common_prefix(self, ids: list[int]) -> int:
        """How many leading tokens of ``ids`` the cache already holds (at least one is left to run)."""
        limit = min(len(self.ids) - 1, len(ids) - 1)
        n = 0
        while n < limit and self.ids[n] == ids[n]:
            n += 1
        return n

    def take(self, length: int) -> Any:
        """The cache cut to ``length`` tokens; it is handed over once (a forward pass extends it)."""
        cache, self.cache = self.cache, None
        extra = int(cache.get_seq_length()) - length
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count removes that many tokens
        return cache


class _Run:
    """One request's prepared inputs, text control and stopping criterion."""

    def __init__(self, encoded: Any, control: TextControl, watch: _Watch) -> None:
        self.encoded = encoded
        self.prompt_tokens = int(encoded["input_ids"].shape[1])
        self.control = control
        self.watch = watch


def answer_only_penalties(
    prompt_tokens: int, repetition_penalty: float, no_repeat_ngram_size: int
) -> list[LogitsProcessor]:
    """Logits processors that penalise repeating the answer's own tokens, never the prompt's."""
    processors: list[LogitsProcessor] = []
    if repetition_penalty != 1.0:
        penalty = RepetitionPenaltyLogitsProcessor(repetition_penalty, prompt_ignore_length=prompt_tokens)
        processors.append(penalty)
    if no_repeat_ngram_size > 0:
        processors.append(AnswerNoRepeatNGram(no_repeat_ngram_size, prompt_tokens))
    return processors


class AnswerNoRepeatNGram(LogitsProcessor):
    """Forbids a token that would repeat an n-gram of the answer (the prompt is not counted).

    Incremental: each step adds the newest n-gram to a table instead of rescanning the sequence.
    """

    def __init__(self, ngram_size: int, prompt_tokens: int) -> None:
        self.n = ngram_size
        self.start = prompt_tokens
        self._seen: list[dict[tuple[int, ...], set[int]]] = []
        self._done: list[int] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        while len(self._seen) < input_ids.shape[0]:
            self._seen.append({})
            self._done.append(self.n - 1)
        for row in range(input_ids.shape[0]):
            answer = input_ids[row, self.start :].tolist()
            seen = self._seen[row]
            for end in range(self._done[row], len(answer)):
                seen.setdefault(tuple(answer[end - self.n + 1 : end]), set()).add(answer[end])
            self._done[row] = max(self._done[row], len(answer))
            if len(answer) >= self.n - 1:
                banned = seen.get(tuple(answer[len(answer) - self.n + 1 :]))
                if banned:
                    scores[row, list(banned)] = float("-inf")
        return scores


def _check_memory(folder: Path, dtype: torch.dtype, model_id: str) -> None:
    """Refuse to load when the machine lacks the memory for the weights (plus working room)."""
    from rag_app.packaged import check_memory

    stored = sum(p.stat().st_size for p in folder.glob("*.safetensors")) or sum(
        p.stat().st_size for p in folder.glob("*.bin")
    )
    scale = 0.5 if dtype == torch.bfloat16 else 1.0  # the converted folders are float32
    needed = int(stored * scale * 1.2) + 300_000_000
    check_memory(
        needed,
        f"the generator {model_id!r}",
        "close other programs, or set generator.model to a smaller model "
        "(Qwen2.5-Coder-0.5B-Instruct, SmolLM2-135M-Instruct)",
    )


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


def _with_adapter(model: Any, folder: Path) -> Any:
    """The model with the adapter in ``folder``: LoRA merged into its weights (no per-token overhead),
    prompt or prefix tuning kept as a PEFT model (their virtual tokens cannot be merged)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError(
            f"generator.adapter {folder} needs PEFT: pip install 'rag-app[train]' (or pip install peft)"
        ) from None
    peft_model = PeftModel.from_pretrained(model, str(folder))
    if peft_model.peft_config[peft_model.active_adapter].is_prompt_learning:
        return peft_model  # prompt / prefix tuning: learned virtual tokens, nothing to merge
    return peft_model.merge_and_unload()
