"""Scoring a run with RAGAS (:func:`score_ragas`): rows from the results, groups by inputs, one
ragas evaluation per group on one event loop, values and failure reasons back into the results."""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections import Counter
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from eval.ragas_metrics.judge import Judge, _describe, _make_judge, _recorder_class
from eval.ragas_metrics.metrics import llm_metrics as _llm_metrics
from eval.ragas_metrics.metrics import offline_metrics as _offline_metrics
from eval.ragas_metrics.metrics import required_columns as _required
from eval.ragas_metrics.names import LLM_METRICS, PREFIX, RAGAS_LLM_METRIC_NAMES
from eval.ragas_metrics.offline import _prepare_offline
from eval.ragas_metrics.outcome import RagasOutcome
from eval.types import EvalSample, SampleResult, clean_value
from rag_app.prompting import strip_citations

if TYPE_CHECKING:
    from rag_app.embeddings.base import Embedder
    from rag_app.guard.guard import Guard
    from rag_app.settings import EvalSettings

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
    judge: Judge | None = None
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


def _judge_summary(judge: Judge, outcome: RagasOutcome, results: Sequence[SampleResult]) -> None:
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


async def _evaluate_all(
    jobs: list[_Job], run_config: Any, outcome: RagasOutcome, judge: Judge | None
) -> None:
    """Every group of answers through ragas, one after the other, on one event loop."""
    try:
        for results, rows, metrics in jobs:
            await _evaluate_group(results, rows, metrics, run_config, outcome)
    finally:
        if judge is not None:
            await judge.aclose()


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
            if name == "semantic_similarity" and value is not None and value < 0.0:
                value = 0.0  # cosine below 0 (unrelated texts; RAGAS does not clip it)
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
