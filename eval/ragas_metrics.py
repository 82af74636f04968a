"""RAGAS metrics of a run, computed by the real ``ragas`` library (0.4) through its evaluation.

Every metric runs as a ragas ``Metric`` object inside ``ragas.aevaluate`` (what
``ragas.evaluate`` runs; see "Async" below); its value lands in
``SampleResult.metrics["ragas.<name>"]``:

Offline (always, no network):

* ``ragas.faithfulness``: our hallucination :class:`~rag_app.guard.guard.Guard` wrapped as a ragas
  ``SingleTurnMetric`` (``Guard.check(response, retrieved_contexts).score``);
* ``ragas.bleu`` (``BleuScore`` with sacrebleu's ``use_effective_order``: without it a one- to
  three-word answer scores 0 even when it equals the reference), ``ragas.rouge_l``
  (``RougeScore(rouge_type="rougeL")``, F-measure), ``ragas.string_similarity``
  (``NonLLMStringSimilarity``, 1 - normalised Levenshtein), ``ragas.semantic_similarity``
  (``SemanticSimilarity`` over the project's embedder, adapted to ``BaseRagasEmbeddings``): these
  need a reference answer (the sample's first one);
* ``ragas.context_precision_nonllm`` / ``ragas.context_recall_nonllm``
  (``NonLLMContextPrecisionWithReference`` / ``NonLLMContextRecall``): need reference contexts.

With a judge (``eval.judge_base_url``, any OpenAI-compatible endpoint; ``ChatOpenAI`` wrapped in
ragas's ``LangchainLLMWrapper``): ``ragas.faithfulness_llm`` (``Faithfulness``: statements, then
NLI verdicts), ``ragas.answer_relevancy`` (``ResponseRelevancy``, our embedder for the cosine),
``ragas.context_precision`` (``LLMContextPrecisionWithReference``) and ``ragas.context_recall``
(``LLMContextRecall``); the last two need a reference answer.

Mapping to ``SingleTurnSample``: ``user_input`` = question, ``response`` = answer without its
citation marks (`` [2]``, ``[1, 3]``), ``retrieved_contexts`` = the passages' texts, ``reference``
= the first reference answer, ``reference_contexts`` = the sample's reference passages. A metric
is *skipped* (no key in ``metrics``; counted in :attr:`RagasOutcome.skipped_samples`) on answers
lacking one of its inputs (no reference, no retrieved passage, empty answer) and on answers the
app failed to produce (``result.error``). A metric that ran and failed (exception, judge reply
that does not parse, timeout, NaN) gets ``None`` and a reason in ``result.errors``: never 0.

Abstentions (``result.abstained``) are scored like any answer, so a run's means include them:
the guard gives an abstention 1.0 (it makes no claim), ``answer_relevancy`` gives it 0 (RAGAS
scores a noncommittal answer 0 by design), BLEU/ROUGE compare it with the reference like any
text, and ``faithfulness_llm`` usually fails with "no statements" (RAGAS returns NaN then).

Quirks of ragas 0.4.3 handled here, in :mod:`eval.ragas_offline` (telemetry, tiktoken) and in
:mod:`eval.ragas_judge` (the judge's client, requests and breaker, and the failure reasons):

* Telemetry: ragas posts usage events unless ``RAGAS_DO_NOT_TRACK=true``; :func:`score_ragas`
  sets it (``setdefault``) before importing ragas. Events are still *built*, which writes a
  random id to ``~/.local/share/ragas/uuid.json`` once (no network).
* tiktoken: ragas's default tokenizer (``ragas.tokenizers``, testset splitters only) and
  langchain-openai's token counting load ``o200k_base`` / ``cl100k_base``, downloading them when
  not cached. The metrics used here never count tokens; still, when the encodings are not in
  tiktoken's cache, ragas's default tokenizer and the judge's ``custom_get_token_ids`` become a
  local word tokenizer, so nothing downloads. ``TIKTOKEN_CACHE_DIR`` is never changed (LlamaIndex
  falls back to its bundled encodings only while it is unset).
* Async: ``ragas.evaluate`` is ``asyncio.run(aevaluate(...))`` after applying ``nest_asyncio`` to
  a running loop. Answers are evaluated in groups (those with the same inputs, as ragas checks
  the columns of a dataset's first sample only), and langchain-openai shares one async HTTP
  client per URL whose connections stay bound to the loop of their first use: a second
  ``evaluate`` fails its first requests with "Event loop is closed" (the client retries them).
  So every group goes through ``ragas.aevaluate`` (the body of ``evaluate``) on *one* fresh loop
  (``asyncio.run``), with the judge's own ``httpx.AsyncClient`` closed at its end; when the
  caller's thread already runs a loop (an async server, Jupyter) that loop runs in a worker
  thread, and ``nest_asyncio`` is never applied. The guard and the embedder run synchronously
  on the loop (never from two threads at once).
* ``LangchainLLMWrapper.agenerate_text`` sets ``temperature`` and ``n`` *on the shared
  ChatOpenAI object* around each call, a race between concurrent metrics; the judge wrapper
  here passes them per request instead, sends ``n`` generations as ``n`` requests (servers
  without ``n`` support give one choice), and keeps ragas's temperatures (0.01, 0.3 for the
  three questions of answer relevancy).
* ``set_run_config`` sets the client's request timeout to ``RunConfig.timeout``, which is also the
  per-metric job timeout; the wrapper keeps the request timeout at ``eval.judge_timeout_s`` and the
  job timeout covers the several calls a metric makes.
* A judge that is down: after 3 consecutive connection errors or timeouts, further judge calls
  fail at once (``JudgeUnavailable``), so a dead endpoint costs seconds, not one timeout per
  metric and answer. Errors per metric come from a callback on ragas's metric chains (ragas itself
  only returns NaN with ``raise_exceptions=False``).

Left out: ``AnswerCorrectness`` / ``FactualCorrectness`` / ``NoiseSensitivity`` (more judge calls
for what faithfulness, the answer metrics and the references already cover) and
``FaithfulnesswithHHEM`` (downloads ``vectara/hallucination_evaluation_model`` from the hub).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import warnings
from collections import Counter
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from eval.ragas_judge import JUDGE_BREAKER_AFTER as JUDGE_BREAKER_AFTER  # re-exported
from eval.ragas_judge import JudgeUnavailable as JudgeUnavailable  # re-exported
from eval.ragas_judge import _describe, _make_judge, _recorder_class
from eval.ragas_offline import _prepare_offline
from eval.types import EvalSample, SampleResult, clean_value
from rag_app.prompting import strip_citations

if TYPE_CHECKING:
    from rag_app.embeddings.base import Embedder
    from rag_app.guard.guard import Guard
    from rag_app.settings import EvalSettings

PREFIX = "ragas."
OFFLINE_METRICS = (
    "faithfulness",
    "bleu",
    "rouge_l",
    "string_similarity",
    "semantic_similarity",
    "context_precision_nonllm",
    "context_recall_nonllm",
)
"""Short names of the metrics that need no judge."""
LLM_METRICS = ("faithfulness_llm", "answer_relevancy", "context_precision", "context_recall")
"""Short names of the metrics that call the judge."""
RAGAS_METRIC_NAMES = tuple(PREFIX + name for name in (*OFFLINE_METRICS, *LLM_METRICS))
"""Every metric name this module writes into ``SampleResult.metrics``."""
RAGAS_OFFLINE_METRIC_NAMES = tuple(PREFIX + name for name in OFFLINE_METRICS)
RAGAS_LLM_METRIC_NAMES = tuple(PREFIX + name for name in LLM_METRICS)

ANSWER_RELEVANCY_STRICTNESS = 3
"""Questions RAGAS generates per answer for answer relevancy (one judge call each)."""

_NO_JUDGE = "no judge configured: set eval.judge_base_url (and judge_model) or eval.judge_local"
_NAN_REASONS = {
    "faithfulness_llm": "RAGAS returned NaN: the judge found no statements in the answer",
    "answer_relevancy": "RAGAS returned NaN: the judge generated no question",
    "context_recall": "RAGAS returned NaN: the judge classified no sentence of the reference",
}
_MISSING = {
    "response": "empty answer",
    "retrieved_contexts": "no retrieved passages",
    "reference": "no reference answer",
    "reference_contexts": "no reference contexts",
    "user_input": "no question",
}


@dataclass
class RagasOutcome:
    """What :func:`score_ragas` did: the metrics that ran, those skipped and why, failures, cost."""

    ran: list[str] = field(default_factory=list)
    """Metric names (``ragas.*``) computed on at least one answer."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric name -> why it ran on no answer (no judge, no reference answers, ...)."""
    skipped_samples: dict[str, dict[str, int]] = field(default_factory=dict)
    """Metric name -> reason -> answers it did not apply to (missing input, app error)."""
    scored: dict[str, int] = field(default_factory=dict)
    """Metric name -> answers that got a value."""
    failures: dict[str, int] = field(default_factory=dict)
    """Metric name -> answers on which it failed (value None, reason in ``result.errors``)."""
    llm_metrics: bool = False
    """Whether the judge's metrics ran."""
    judge_calls: int = 0
    """Chat completion requests sent to the judge (format-fix retries included)."""
    judge_error: str | None = None
    """Why the judge failed, when it was unreachable or failed on every answer."""
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    evaluations: list[Any] = field(default_factory=list, repr=False)
    """The ``ragas.EvaluationResult`` of each group of answers evaluated (not serialised)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("evaluations")
        return data


def estimate_judge_calls(
    n_samples: int,
    llm_metrics_enabled: bool,
    *,
    contexts_per_sample: int = 5,
    strictness: int = ANSWER_RELEVANCY_STRICTNESS,
) -> int:
    """Judge requests that scoring ``n_samples`` answers takes, following ragas 0.4's prompts.

    Per answer: faithfulness 2 (statements, then NLI verdicts), answer relevancy ``strictness``
    (one generated question each), context precision one per retrieved context, context recall 1.
    An upper bound for answers with a reference (precision and recall need one); a reply that does
    not parse costs up to 3 more calls (RAGAS's format-fixing prompt), not counted here.
    """
    if not llm_metrics_enabled or n_samples <= 0:
        return 0
    return n_samples * (2 + strictness + max(contexts_per_sample, 0) + 1)


def score_ragas(
    results: list[SampleResult],
    samples: dict[str, EvalSample],
    *,
    embedder: Embedder,
    guard: Guard | None,
    eval_settings: EvalSettings,
    llm_metrics: bool | None = None,
    judge_generator: Any = None,
    llm_metric_names: Sequence[str] | None = None,
) -> RagasOutcome:
    """Add the RAGAS metrics of each result into ``result.metrics`` (``ragas.*``); see the module doc.

    ``llm_metrics``: None runs the judge's metrics when a judge is configured (an endpoint, or
    ``judge_generator`` in process); on at most ``eval.judge_questions`` answers;
    False never, True whenever a judge is configured (without one they are skipped with a
    reason: nothing is sent to a default OpenAI endpoint). ``guard`` None skips
    ``ragas.faithfulness``.
    ``judge_generator``: judge with this generator in process (``eval.judge_local``) instead of
    an endpoint. ``llm_metric_names`` limits the judge's metrics (e.g. ``["faithfulness_llm"]``).
    """
    start = time.perf_counter()
    _prepare_offline()
    outcome = RagasOutcome()

    judge_reason = _judge_reason(eval_settings, llm_metrics, local=judge_generator is not None)
    metrics = _offline_metrics(embedder, guard, outcome)
    judge = None
    if judge_reason is None:
        judge = _make_judge(eval_settings, judge_generator)
        chosen = _llm_metrics(judge, embedder)
        if llm_metric_names is not None:
            chosen = {name: m for name, m in chosen.items() if name in llm_metric_names}
        metrics.update(chosen)
        outcome.llm_metrics = True
    else:
        for name in LLM_METRICS:
            outcome.skipped[PREFIX + name] = judge_reason
        if llm_metrics or (llm_metrics is None and eval_settings.judge_base_url):
            outcome.messages.append(f"RAGAS LLM metrics skipped: {judge_reason}")
    judged = set(range(len(results)))
    if judge is not None and eval_settings.judge_questions is not None:
        judged = set(range(min(len(results), eval_settings.judge_questions)))
        if len(judged) < len(results):
            outcome.messages.append(
                f"RAGAS LLM metrics judged the first {len(judged)} of {len(results)} answers "
                "(eval.judge_questions)"
            )

    rows = _rows(results, samples)
    groups: dict[frozenset[str], list[int]] = {}
    for i, row in enumerate(rows):
        if row is not None:
            groups.setdefault(frozenset(row), []).append(i)
    required = {name: _required(metric) for name, metric in metrics.items()}
    _count_skips(results, rows, metrics, required, outcome)

    max_contexts = max((len(r.get("retrieved_contexts", [])) for r in rows if r), default=1)
    run_config = _run_config(eval_settings, max_contexts, judge is not None)
    jobs = []
    llm_names = {name for name in metrics if name in LLM_METRICS}
    for columns, members in groups.items():
        chosen = {name: m for name, m in metrics.items() if required[name] <= columns}
        offline = {name: m for name, m in chosen.items() if name not in llm_names}
        llm = {name: m for name, m in chosen.items() if name in llm_names}
        if offline:
            jobs.append(([results[i] for i in members], [rows[i] for i in members], offline))
        judged_members = [i for i in members if i in judged]
        if llm and judged_members:
            jobs.append(([results[i] for i in judged_members], [rows[i] for i in judged_members], llm))
    _run_async(_evaluate_all(jobs, run_config, outcome, judge))

    for name in metrics:
        key = PREFIX + name
        if outcome.scored.get(key) or outcome.failures.get(key):
            outcome.ran.append(key)
        elif key not in outcome.skipped:
            reasons = outcome.skipped_samples.get(key, {})
            outcome.skipped[key] = ", ".join(sorted(reasons)) if reasons else "no answers to score"
    if judge is not None:
        outcome.judge_calls = judge.calls
        _judge_summary(judge, outcome, results)
    outcome.seconds = round(time.perf_counter() - start, 3)
    return outcome


# ---------------------------------------------------------------------------------------------
# metrics


def guard_metric(guard: Guard, name: str = "faithfulness") -> Any:
    """Our guard as a ragas ``SingleTurnMetric`` named ``name``."""
    return _guard_metric_class()(name=name, guard=guard)


@functools.cache
def _guard_metric_class() -> type:
    from ragas.metrics.base import MetricOutputType, MetricType, SingleTurnMetric

    @dataclass
    class GuardFaithfulness(SingleTurnMetric):
        """Faithfulness from the hallucination guard: its support score of the answer, offline."""

        name: str = "faithfulness"
        _required_columns: dict[MetricType, set[str]] = field(
            default_factory=lambda: {MetricType.SINGLE_TURN: {"user_input", "response", "retrieved_contexts"}}
        )
        output_type: MetricOutputType = MetricOutputType.CONTINUOUS
        guard: Any = None

        def init(self, run_config: Any) -> None:
            if self.guard is None:
                raise ValueError(f"metric {self.name!r} needs a guard")

        async def _single_turn_ascore(self, sample: Any, callbacks: Any) -> float:
            grounding = self.guard.check(sample.response or "", list(sample.retrieved_contexts or []))
            return float(grounding.score)

    return GuardFaithfulness


def ragas_embeddings(embedder: Embedder) -> Any:
    """The project's embedder as ragas ``BaseRagasEmbeddings`` (sync and async)."""
    return _embeddings_class()(embedder)


@functools.cache
def _embeddings_class() -> type:
    from ragas.embeddings.base import BaseRagasEmbeddings
    from ragas.run_config import RunConfig

    class EmbedderAdapter(BaseRagasEmbeddings):
        """``Embedder`` -> ragas embeddings; the async methods run the (CPU) embedder inline."""

        def __init__(self, embedder: Embedder) -> None:
            super().__init__()
            self.embedder = embedder
            self.run_config = RunConfig()

        def embed_query(self, text: str) -> list[float]:
            return [float(x) for x in self.embedder.embed_query(text)]

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if not texts:
                return []
            return [[float(x) for x in row] for row in self.embedder.embed_documents(list(texts))]

        async def aembed_query(self, text: str) -> list[float]:
            return self.embed_query(text)

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embed_documents(texts)

    return EmbedderAdapter


def _offline_metrics(embedder: Embedder, guard: Guard | None, outcome: RagasOutcome) -> dict[str, Any]:
    with warnings.catch_warnings():  # "import from ragas.metrics.collections" (the v1 API)
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import (
            BleuScore,
            NonLLMContextPrecisionWithReference,
            NonLLMContextRecall,
            NonLLMStringSimilarity,
            RougeScore,
            SemanticSimilarity,
        )

    metrics: dict[str, Any] = {}
    if guard is not None:
        metrics["faithfulness"] = guard_metric(guard)
    else:
        outcome.skipped[PREFIX + "faithfulness"] = "no guard (guard.enabled is off)"
    metrics["bleu"] = BleuScore(name="bleu", kwargs={"use_effective_order": True})
    metrics["rouge_l"] = RougeScore(name="rouge_l", rouge_type="rougeL")
    metrics["string_similarity"] = NonLLMStringSimilarity(name="string_similarity")
    metrics["semantic_similarity"] = SemanticSimilarity(
        name="semantic_similarity", embeddings=ragas_embeddings(embedder)
    )
    metrics["context_precision_nonllm"] = NonLLMContextPrecisionWithReference(name="context_precision_nonllm")
    metrics["context_recall_nonllm"] = NonLLMContextRecall(name="context_recall_nonllm")
    return metrics


def _llm_metrics(judge: Any, embedder: Embedder) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import (
            Faithfulness,
            LLMContextPrecisionWithReference,
            LLMContextRecall,
            ResponseRelevancy,
        )

    return {
        "faithfulness_llm": Faithfulness(name="faithfulness_llm", llm=judge),
        "answer_relevancy": ResponseRelevancy(
            name="answer_relevancy",
            llm=judge,
            embeddings=ragas_embeddings(embedder),
            strictness=ANSWER_RELEVANCY_STRICTNESS,
        ),
        "context_precision": LLMContextPrecisionWithReference(name="context_precision", llm=judge),
        "context_recall": LLMContextRecall(name="context_recall", llm=judge),
    }


def _required(metric: Any) -> frozenset[str]:
    from ragas.metrics.base import MetricType

    return frozenset(metric.required_columns.get(MetricType.SINGLE_TURN.name, set()))


# ---------------------------------------------------------------------------------------------
# judge


def _judge_reason(settings: EvalSettings, llm_metrics: bool | None, *, local: bool = False) -> str | None:
    """Why the judge's metrics do not run, or None when they do."""
    if llm_metrics is False:
        return "LLM metrics turned off (--no-judge)"
    if local:
        return None
    if not settings.judge_base_url:
        return _NO_JUDGE
    if not settings.judge_model:
        return "no judge model: set eval.judge_model to the model the endpoint serves"
    return None


def _run_config(settings: EvalSettings, max_contexts: int, with_judge: bool) -> Any:
    from ragas.run_config import RunConfig

    if not with_judge:
        return RunConfig(timeout=600, max_retries=1, max_workers=4, seed=0)
    # a job is one metric on one answer: context precision makes one call per context, and each
    # call may be tried twice (the client's retry) after a back-off of up to ~2 s
    calls = max(3, max_contexts + 1)
    return RunConfig(
        timeout=math.ceil(calls * (2 * settings.judge_timeout_s + 2)),
        max_retries=3,
        max_wait=10,
        max_workers=settings.judge_max_workers,
        seed=0,
    )


def _judge_summary(judge: Any, outcome: RagasOutcome, results: Sequence[SampleResult]) -> None:
    """``judge_error`` when the judge was found down or failed on every answer."""
    if judge.down is not None:
        outcome.judge_error = judge.down
    elif any(outcome.failures.get(n) for n in RAGAS_LLM_METRIC_NAMES) and not any(
        outcome.scored.get(n) for n in RAGAS_LLM_METRIC_NAMES
    ):
        reasons = Counter(r.errors[n] for r in results for n in RAGAS_LLM_METRIC_NAMES if n in r.errors)
        common = "; ".join(reason for reason, _ in reasons.most_common(2))
        outcome.judge_error = f"the judge at {judge.url} failed on every answer: {common}"
    if outcome.judge_error:
        outcome.messages.append(f"RAGAS LLM metrics failed: {outcome.judge_error}")


# ---------------------------------------------------------------------------------------------
# samples and evaluation


def _rows(results: Sequence[SampleResult], samples: dict[str, EvalSample]) -> list[dict[str, Any] | None]:
    """The ``SingleTurnSample`` fields each result has (None: the app failed on it)."""
    rows: list[dict[str, Any] | None] = []
    for result in results:
        if result.error:
            rows.append(None)
            continue
        sample = samples.get(result.sample_id)
        row: dict[str, Any] = {"user_input": result.question or (sample.question if sample else "")}
        if not row["user_input"]:
            del row["user_input"]
        response = strip_citations(result.answer or "")
        if response:
            row["response"] = response
        contexts = [p.text for p in result.passages if p.text.strip()]
        if contexts:
            row["retrieved_contexts"] = contexts
        if sample is not None:
            references = [a for a in sample.answers if a.strip()]
            if references:
                row["reference"] = references[0]
            reference_contexts = [c for c in sample.contexts if c.strip()]
            if reference_contexts:
                row["reference_contexts"] = reference_contexts
        rows.append(row)
    return rows


def _count_skips(
    results: Sequence[SampleResult],
    rows: Sequence[dict[str, Any] | None],
    metrics: dict[str, Any],
    required: dict[str, frozenset[str]],
    outcome: RagasOutcome,
) -> None:
    for row in rows:
        for name in metrics:
            if row is None:
                reason = "the app failed on the question"
            else:
                missing = sorted(required[name] - set(row))
                if not missing:
                    continue
                reason = ", ".join(_MISSING.get(m, f"no {m}") for m in missing)
            counts = outcome.skipped_samples.setdefault(PREFIX + name, {})
            counts[reason] = counts.get(reason, 0) + 1
    if not any(row and "reference" in row for row in rows) and results:
        for name in metrics:
            if "reference" in required[name]:
                outcome.skipped.setdefault(PREFIX + name, "no reference answers")
    if not any(row and "reference_contexts" in row for row in rows) and results:
        for name in metrics:
            if "reference_contexts" in required[name]:
                outcome.skipped.setdefault(PREFIX + name, "no reference contexts")


_Job = tuple[list[SampleResult], list[dict[str, Any] | None], dict[str, Any]]


async def _evaluate_all(jobs: list[_Job], run_config: Any, outcome: RagasOutcome, judge: Any) -> None:
    """Every group of answers through ragas, one after the other, on one event loop."""
    try:
        for results, rows, metrics in jobs:
            await _evaluate_group(results, rows, metrics, run_config, outcome)
    finally:
        if judge is not None and judge.http_client is not None:
            await judge.http_client.aclose()


async def _evaluate_group(
    results: list[SampleResult],
    rows: list[dict[str, Any] | None],
    metrics: dict[str, Any],
    run_config: Any,
    outcome: RagasOutcome,
) -> None:
    """One ragas evaluation over answers with the same inputs, values written into ``results``."""
    from ragas import EvaluationDataset, SingleTurnSample, aevaluate

    dataset = EvaluationDataset(samples=[SingleTurnSample(**row) for row in rows if row is not None])
    recorder = _recorder_class()()
    try:
        with warnings.catch_warnings():  # "use @experiment": the v1 API
            warnings.simplefilter("ignore", DeprecationWarning)
            evaluation: Any = await aevaluate(
                dataset=dataset,
                metrics=list(metrics.values()),
                run_config=run_config,
                raise_exceptions=False,
                show_progress=False,
                callbacks=[recorder],
            )
    except Exception as error:
        failed = f"ragas evaluation failed: {_describe(error)}"
        outcome.messages.append(failed)
        for result in results:
            for name in metrics:
                _store(result, name, None, failed, outcome)
        return
    outcome.evaluations.append(evaluation)
    for i, result in enumerate(results):
        scores = evaluation.scores[i]
        for name, metric in metrics.items():
            value = _unit(clean_value(_score_of(scores, metric)))
            reason = None
            if value is None:
                reason = recorder.errors.get((i, metric.name)) or _NAN_REASONS.get(
                    name, "RAGAS returned NaN without an error"
                )
            _store(result, name, value, reason, outcome)


def _store(
    result: SampleResult, name: str, value: float | None, reason: str | None, outcome: RagasOutcome
) -> None:
    key = PREFIX + name
    result.metrics[key] = value
    if value is None:
        result.errors[key] = reason or "failed"
        outcome.failures[key] = outcome.failures.get(key, 0) + 1
    else:
        result.errors.pop(key, None)
        outcome.scored[key] = outcome.scored.get(key, 0) + 1


def _score_of(scores: dict[str, Any], metric: Any) -> Any:
    """A metric's value in a row of ``EvaluationResult.scores`` (``rouge_l(mode=fmeasure)`` too)."""
    if metric.name in scores:
        return scores[metric.name]
    return scores.get(f"{metric.name}(mode={getattr(metric, 'mode', '')})")


def _unit(value: float | None) -> float | None:
    """``value`` with float noise around 0 and 1 rounded off (BLEU's 1.0000000000000004,
    average precision's 0.9999999999 from its 1e-10 guard)."""
    if value is None:
        return None
    nearest = round(value)
    return float(nearest) if nearest in (0, 1) and abs(value - nearest) < 1e-9 else value


def _run_async(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on a fresh event loop, in a worker thread when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragas") as pool:
        pool.submit(asyncio.run, coroutine).result()
