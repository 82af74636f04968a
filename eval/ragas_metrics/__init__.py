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

With a judge (a :class:`~eval.ragas_metrics.judge.Judge`: ``eval.judge_base_url``, any
OpenAI-compatible endpoint, or ``eval.judge_local``, the generator in process; either wrapped in
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

Quirks of ragas 0.4.3 handled here, in :mod:`eval.ragas_metrics.offline` (telemetry, tiktoken) and in
:mod:`eval.ragas_metrics.judge` (the judge's client, requests and breaker, and the failure reasons):

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

The package: :mod:`~eval.ragas_metrics.names` (metric names, the judge-call estimate),
:mod:`~eval.ragas_metrics.metrics` (the ragas metric objects, our guard and embedder adapted),
:mod:`~eval.ragas_metrics.judge` (the :class:`~eval.ragas_metrics.judge.Judge` backends),
:mod:`~eval.ragas_metrics.offline` (no network), :mod:`~eval.ragas_metrics.scoring`
(:func:`score_ragas`: rows, groups, evaluation, outcome).
"""

from eval.ragas_metrics.judge import JUDGE_BREAKER_AFTER, JUDGES, Judge, JudgeUnavailable
from eval.ragas_metrics.names import (
    ANSWER_RELEVANCY_STRICTNESS,
    LLM_METRICS,
    OFFLINE_METRICS,
    PREFIX,
    RAGAS_LLM_METRIC_NAMES,
    RAGAS_METRIC_NAMES,
    RAGAS_OFFLINE_METRIC_NAMES,
    estimate_judge_calls,
)
from eval.ragas_metrics.outcome import RagasOutcome
from eval.ragas_metrics.scoring import score_ragas
from rag_app.prompting import strip_citations

__all__ = [
    "ANSWER_RELEVANCY_STRICTNESS",
    "JUDGES",
    "JUDGE_BREAKER_AFTER",
    "LLM_METRICS",
    "OFFLINE_METRICS",
    "PREFIX",
    "RAGAS_LLM_METRIC_NAMES",
    "RAGAS_METRIC_NAMES",
    "RAGAS_OFFLINE_METRIC_NAMES",
    "Judge",
    "JudgeUnavailable",
    "RagasOutcome",
    "estimate_judge_calls",
    "score_ragas",
    "strip_citations",
]
