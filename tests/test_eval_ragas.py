"""RAGAS metrics (eval.ragas_metrics) with the real ragas library, our guard and embedder, and a
scripted judge behind a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("ragas")
pytest.importorskip("langchain_openai")

from eval.ragas_metrics import (
    JUDGES,
    RAGAS_LLM_METRIC_NAMES,
    RAGAS_METRIC_NAMES,
    RAGAS_OFFLINE_METRIC_NAMES,
    RagasOutcome,
    estimate_judge_calls,
    score_ragas,
    strip_citations,
)
from eval.types import EvalSample, Passage, SampleResult
from rag_app.generation.base import Completion
from tests.openai_server import SLEEPY, OpenAIServer

PARIS = "Paris is the capital and largest city of France."
EIFFEL = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair."
LOUVRE = "The Louvre is the world's most visited museum and is located in Paris."
BEES = "Honey bees communicate the location of flowers with a waggle dance."

SAMPLES = {
    "capital": EvalSample(
        id="capital",
        question="What is the capital of France?",
        answers=["Paris is the capital of France."],
        contexts=[PARIS],
    ),
    "eiffel": EvalSample(
        id="eiffel",
        question="When was the Eiffel Tower completed?",
        answers=["The Eiffel Tower was completed in 1889."],
        contexts=[EIFFEL],
    ),
    "everest": EvalSample(
        id="everest", question="How tall is Mount Everest?", answers=["Mount Everest is 8849 metres tall."]
    ),
    "louvre": EvalSample(id="louvre", question="Where is the Louvre?"),
    "broken": EvalSample(
        id="broken", question="What do bees dance for?", answers=["To show where flowers are."]
    ),
}


def _passages(*texts: str) -> list[Passage]:
    return [
        Passage(number=i, source=f"doc{i}.txt", page=None, start=0, end=len(t), chunk_id=i, score=1.0, text=t)
        for i, t in enumerate(texts, 1)
    ]


def _results() -> list[SampleResult]:
    def result(sample_id: str, answer: str, passages: list[Passage], **extra: Any) -> SampleResult:
        return SampleResult(
            sample_id=sample_id,
            replicate=0,
            question=SAMPLES[sample_id].question,
            answer=answer,
            passages=passages,
            **extra,
        )

    return [
        # the perfect answer: equal to the reference, supported by passage 1
        result("capital", "Paris is the capital of France [1].", _passages(PARIS, EIFFEL)),
        # a wrong answer that its passage contradicts
        result("eiffel", "The Eiffel Tower was completed in 1650 by Napoleon [1].", _passages(EIFFEL)),
        result("everest", "I could not find this in the documents.", _passages(BEES), abstained=True),
        # no reference answer: only the metrics without one apply
        result("louvre", "The Louvre is located in Paris [1].", _passages(LOUVRE)),
        result("broken", "", [], error="generator crashed"),
    ]


def _by_id(results: Sequence[SampleResult]) -> dict[str, SampleResult]:
    return {r.sample_id: r for r in results}


# ---------------------------------------------------------------------------------------------
# a scripted judge: answers RAGAS's prompts with JSON computed from their inputs

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "is", "was", "in", "of", "and", "by", "for", "to", "this", "it", "with"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _supported(claim: str, context: str) -> int:
    return int(_words(claim) <= _words(context))


class ScriptedJudge:
    """A Generator for :class:`OpenAIServer` that plays the judge for RAGAS 0.4's prompts.

    Requests whose input mentions a word of ``garble_on`` get a reply that is not JSON (for
    the prompt named by ``garble_prompt``), and so does RAGAS's format-fixing prompt.
    """

    model_id = "judge"
    adapter_id = None

    def __init__(self, questions: dict[str, str], garble_prompt: str, garble_on: str) -> None:
        self.questions = questions
        self.garble_prompt = garble_prompt
        self.garble_on = garble_on
        self.prompts: list[str] = []

    def generate(self, messages: Sequence[Any], **_: Any) -> Completion:
        prompt = str(messages[-1]["content"])
        self.prompts.append(prompt)
        return Completion(text=self.reply(prompt), prompt_tokens=len(prompt) // 4, completion_tokens=20)

    def stream(self, messages: Sequence[Any], **kwargs: Any) -> Iterator[str]:
        yield self.generate(messages, **kwargs).text

    def reply(self, prompt: str) -> str:
        head = prompt.lstrip()[:80]
        if head.startswith("The output string did not satisfy"):
            return "still {not json"
        data = json.loads(prompt.rsplit("input: ", 1)[1].rsplit("Output:", 1)[0])
        kind = self.kind(head)
        if kind == self.garble_prompt and self.garble_on in json.dumps(data).lower():
            return "Sure! Here is my verdict: {verdict: yes"
        if kind == "statements":
            sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", data["answer"]) if s.strip()]
            return json.dumps({"statements": sentences})
        if kind == "nli":
            verdicts = [
                {"statement": s, "reason": "scripted", "verdict": _supported(s, data["context"])}
                for s in data["statements"]
            ]
            return json.dumps({"statements": verdicts})
        if kind == "relevance":
            response = data["response"]
            noncommittal = int("could not find" in response.lower())
            question = next((q for a, q in self.questions.items() if _words(a) & _words(response)), "Why?")
            return json.dumps({"question": question, "noncommittal": noncommittal})
        if kind == "precision":
            useful = int(bool(_words(data["answer"]) & _words(data["context"])))
            return json.dumps({"reason": "scripted", "verdict": useful})
        if kind == "recall":
            verdict = _supported(data["answer"], data["context"])
            item = {"statement": data["answer"], "reason": "scripted", "attributed": verdict}
            return json.dumps({"classifications": [item]})
        raise AssertionError(f"unexpected prompt: {head!r}")

    @staticmethod
    def kind(head: str) -> str:
        starts = {
            "Given a question and an answer, analyze": "statements",
            "Your task is to judge the faithfulness": "nli",
            "Generate a question for the given answer": "relevance",
            "Given question, answer and context verify": "precision",
            "Given a context, and an answer, analyze": "recall",
        }
        return next((kind for start, kind in starts.items() if head.startswith(start)), "unknown")


@pytest.fixture(scope="module")
def guard(embedder):
    from rag_app.guard.guard import Guard

    return Guard(embedder)


@pytest.fixture()
def no_internet(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Refuse (and record) every connection and name lookup that is not to the loopback address."""
    attempts: list[Any] = []
    connect = socket.socket.connect
    getaddrinfo = socket.getaddrinfo

    def local(host: Any) -> bool:
        return str(host) in {"127.0.0.1", "localhost", "::1"}

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
            attempts.append(address)
            raise OSError(f"network access blocked in tests: {address}")
        return connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not local(host):
            attempts.append(host)
            raise socket.gaierror(f"name lookup blocked in tests: {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


def _eval_settings(settings: Any, **values: Any) -> Any:
    return settings.eval.model_copy(update=values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------


def test_names_and_estimate():
    assert set(RAGAS_METRIC_NAMES) == {*RAGAS_OFFLINE_METRIC_NAMES, *RAGAS_LLM_METRIC_NAMES}
    assert all(name.startswith("ragas.") for name in RAGAS_METRIC_NAMES)
    assert {"ragas.faithfulness", "ragas.bleu", "ragas.rouge_l"} <= set(RAGAS_OFFLINE_METRIC_NAMES)
    # faithfulness 2 + answer relevancy 3 + context precision 5 (one per context) + context recall 1
    assert estimate_judge_calls(10, True) == 110
    assert estimate_judge_calls(10, True, contexts_per_sample=2) == 80
    assert estimate_judge_calls(10, False) == 0
    assert (
        strip_citations("Paris is the capital [1]. It is big [2, 3].") == "Paris is the capital. It is big."
    )


def test_offline_metrics(settings, embedder, guard, no_internet, monkeypatch, tmp_path):
    monkeypatch.delenv("RAGAS_DO_NOT_TRACK", raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: tiktoken would have to download
    results = _results()
    outcome = score_ragas(results, SAMPLES, embedder=embedder, guard=guard, eval_settings=settings.eval)
    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"
    assert isinstance(outcome, RagasOutcome)
    by_id = _by_id(results)

    for result in results:
        for name, value in result.metrics.items():
            assert name.startswith("ragas.")
            assert value is not None, (result.sample_id, name, result.errors.get(name))
            assert 0.0 <= value <= 1.0, (result.sample_id, name, value)
    perfect, wrong = by_id["capital"].metrics, by_id["eiffel"].metrics
    # the answer equals the reference once its citation mark is gone
    for name in ("ragas.bleu", "ragas.rouge_l", "ragas.string_similarity", "ragas.semantic_similarity"):
        assert perfect[name] == pytest.approx(1.0, abs=1e-6), name
        assert wrong[name] < perfect[name], name
    # "The Eiffel Tower was completed in 1650 by Napoleon" vs "... completed in 1889": the longest
    # common subsequence holds 6 of its 9 words and 6 of the reference's 7 -> F = 2PR / (P + R)
    assert wrong["ragas.rouge_l"] == pytest.approx(2 * (6 / 9) * (6 / 7) / (6 / 9 + 6 / 7), abs=1e-6)
    assert wrong["ragas.bleu"] < 0.6
    # the guard as a ragas metric: the supported answer scores higher than the contradicted one
    assert perfect["ragas.faithfulness"] > wrong["ragas.faithfulness"] + 0.2
    # ... and it is the guard's own score of the answer without its citation marks
    expected = guard.check("The Eiffel Tower was completed in 1650 by Napoleon.", [EIFFEL]).score
    assert wrong["ragas.faithfulness"] == pytest.approx(expected)
    # reference passages retrieved first -> precision and recall 1
    assert perfect["ragas.context_precision_nonllm"] == 1.0
    assert perfect["ragas.context_recall_nonllm"] == 1.0
    # the abstention makes no claim: the guard gives 1
    assert by_id["everest"].metrics["ragas.faithfulness"] == 1.0
    assert "ragas.context_recall_nonllm" not in by_id["everest"].metrics  # no reference contexts
    # no reference: only faithfulness applies
    assert set(by_id["louvre"].metrics) == {"ragas.faithfulness"}
    assert by_id["broken"].metrics == {} and by_id["broken"].errors == {}

    assert set(outcome.ran) == set(RAGAS_OFFLINE_METRIC_NAMES)
    assert not outcome.failures
    assert outcome.skipped == dict.fromkeys(
        RAGAS_LLM_METRIC_NAMES,
        "no judge configured: set eval.judge_base_url (and judge_model) or eval.judge_local",
    )
    assert outcome.skipped_samples["ragas.bleu"] == {
        "no reference answer": 1,
        "the app failed on the question": 1,
    }
    assert outcome.skipped_samples["ragas.faithfulness"] == {"the app failed on the question": 1}
    assert outcome.judge_calls == 0 and outcome.judge_error is None and not outcome.llm_metrics
    assert json.dumps(outcome.to_dict())
    # every metric ran through ragas.evaluate: its columns are in the EvaluationResults
    columns = set().union(*(set(e.to_pandas().columns) for e in outcome.evaluations))
    assert {"faithfulness", "bleu", "semantic_similarity", "context_recall_nonllm"} <= columns
    assert any(c.startswith("rouge_l") for c in columns)
    assert type(outcome.evaluations[0]).__name__ == "EvaluationResult"
    # nothing tried the network: telemetry off, tiktoken not loaded
    assert no_internet == []
    from ragas.tokenizers import DEFAULT_TOKENIZER

    assert DEFAULT_TOKENIZER.count_tokens("two words") == 2
    assert no_internet == []


def test_inside_a_running_event_loop(settings, embedder, guard):
    results = _results()[:2]

    async def main() -> RagasOutcome:
        return score_ragas(results, SAMPLES, embedder=embedder, guard=guard, eval_settings=settings.eval)

    outcome = asyncio.run(main())
    assert outcome.scored["ragas.bleu"] == 2
    assert results[0].metrics["ragas.bleu"] == pytest.approx(1.0)


def test_no_guard_skips_faithfulness(settings, embedder):
    results = _results()[:1]
    outcome = score_ragas(results, SAMPLES, embedder=embedder, guard=None, eval_settings=settings.eval)
    assert "ragas.faithfulness" not in results[0].metrics
    assert "guard" in outcome.skipped["ragas.faithfulness"]


def test_llm_metrics_with_scripted_judge(settings, embedder, guard, no_internet):
    judge = ScriptedJudge(
        {s.answers[0] if s.answers else s.question: s.question for s in SAMPLES.values()},
        garble_prompt="recall",
        garble_on="when was the eiffel tower completed",
    )
    server = OpenAIServer(judge, ["judge"])  # type: ignore[arg-type]
    results = _results()
    with server.running() as url:
        eval_settings = _eval_settings(
            settings, judge_base_url=url, judge_model="judge", judge_timeout_s=10.0, judge_max_workers=4
        )
        outcome = score_ragas(results, SAMPLES, embedder=embedder, guard=guard, eval_settings=eval_settings)
    by_id = _by_id(results)
    assert no_internet == []
    assert outcome.llm_metrics
    assert set(outcome.ran) == set(RAGAS_METRIC_NAMES)
    assert outcome.judge_calls == len(server.requests) > 0
    assert all(r["model"] == "judge" for r in server.requests)

    perfect, wrong = by_id["capital"].metrics, by_id["eiffel"].metrics
    assert perfect["ragas.faithfulness_llm"] == 1.0  # its one statement is in passage 1
    assert wrong["ragas.faithfulness_llm"] == 0.0  # 1650 and Napoleon are not in the passage
    assert perfect["ragas.answer_relevancy"] == pytest.approx(1.0, abs=1e-4)  # regenerated question
    assert by_id["everest"].metrics["ragas.answer_relevancy"] == 0.0  # noncommittal
    assert perfect["ragas.context_precision"] == 1.0  # passage 1 useful, passage 2 not: AP = 1
    assert perfect["ragas.context_recall"] == 1.0
    # the judge's reply to context recall on the Eiffel question never parses: failed, not 0
    assert wrong["ragas.context_recall"] is None
    assert "Parser" in by_id["eiffel"].errors["ragas.context_recall"]
    assert outcome.failures == {"ragas.context_recall": 1}
    assert outcome.judge_error is None
    # RAGAS asked its format-fixing prompt 3 times for each unparseable reply
    assert sum(p.lstrip().startswith("The output string did not satisfy") for p in judge.prompts) == 3
    # answers without a reference get no context precision / recall
    assert "ragas.context_precision" not in by_id["louvre"].metrics
    assert by_id["louvre"].metrics["ragas.faithfulness_llm"] == 1.0
    for result in results:
        for name, value in result.metrics.items():
            assert value is None or 0.0 <= value <= 1.0, (name, value)
            assert (value is None) == (name in result.errors)


def test_judge_down(settings, embedder, guard, no_internet):
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    eval_settings = _eval_settings(settings, judge_base_url=url, judge_model="judge", judge_timeout_s=2.0)
    results = _results()
    started = time.perf_counter()
    outcome = score_ragas(results, SAMPLES, embedder=embedder, guard=guard, eval_settings=eval_settings)
    assert time.perf_counter() - started < 30
    assert no_internet == []
    for result in results:
        if result.error:
            continue
        llm = [name for name in result.metrics if name in RAGAS_LLM_METRIC_NAMES]
        assert llm, result.sample_id
        for name in llm:
            assert result.metrics[name] is None
            assert result.errors[name]
        assert result.metrics["ragas.faithfulness"] is not None  # the offline metrics still ran
    assert outcome.judge_error and url in outcome.judge_error and "Connect" in outcome.judge_error
    assert any("failed" in m for m in outcome.messages)
    assert set(outcome.failures) == set(RAGAS_LLM_METRIC_NAMES)
    assert not any(outcome.scored.get(name) for name in RAGAS_LLM_METRIC_NAMES)


def test_judge_not_configured_is_never_called(settings, embedder, guard, no_internet):
    """Forcing the LLM metrics without a judge URL skips them: nothing goes to api.openai.com."""
    results = _results()[:1]
    outcome = score_ragas(
        results, SAMPLES, embedder=embedder, guard=guard, eval_settings=settings.eval, llm_metrics=True
    )
    assert not outcome.llm_metrics
    assert outcome.skipped["ragas.faithfulness_llm"].startswith("no judge configured")
    assert any("skipped" in m for m in outcome.messages)
    assert no_internet == []


def test_judge_timeout(settings, embedder, guard):
    """A judge slower than eval.judge_timeout_s: its metrics fail with a timeout, quickly."""
    judge = ScriptedJudge({}, garble_prompt="", garble_on="")
    server = OpenAIServer(judge, ["judge"], sleep_s=1.5)  # type: ignore[arg-type]
    results = _results()[:2]
    with server.running() as url:
        eval_settings = _eval_settings(
            settings, judge_base_url=url, judge_model=SLEEPY, judge_timeout_s=0.3, judge_max_workers=2
        )
        started = time.perf_counter()
        outcome = score_ragas(results, SAMPLES, embedder=embedder, guard=guard, eval_settings=eval_settings)
        elapsed = time.perf_counter() - started
    assert elapsed < 20
    assert outcome.judge_error and "Timeout" in outcome.judge_error
    for result in results:
        for name in RAGAS_LLM_METRIC_NAMES:
            assert result.metrics[name] is None and result.errors[name]
        assert result.metrics["ragas.bleu"] is not None


def test_local_judge_in_process_without_a_server(settings, embedder, guard, no_internet):
    """``eval.judge_local``: the generator itself judges (as a LangChain chat model), no HTTP."""
    questions = {s.answers[0] if s.answers else s.question: s.question for s in SAMPLES.values()}
    judge = ScriptedJudge(questions, garble_prompt="", garble_on="no such question")
    results = _results()
    eval_settings = _eval_settings(settings, judge_local=True, judge_max_workers=2)
    outcome = score_ragas(
        results,
        SAMPLES,
        embedder=embedder,
        guard=guard,
        eval_settings=eval_settings,
        judge_generator=judge,
        llm_metric_names=["faithfulness_llm"],
    )
    by_id = _by_id(results)
    assert no_internet == []
    assert outcome.llm_metrics and outcome.judge_calls == len(judge.prompts) > 0
    assert "ragas.faithfulness_llm" in outcome.ran and "ragas.answer_relevancy" not in outcome.ran
    assert by_id["capital"].metrics["ragas.faithfulness_llm"] == 1.0
    assert by_id["eiffel"].metrics["ragas.faithfulness_llm"] == 0.0
    assert "ragas.context_recall" not in by_id["capital"].metrics


@pytest.mark.parametrize("backend", sorted(JUDGES))
def test_every_judge_backend_starts_with_clean_books_and_closes(settings, backend):
    """Each entry of ``JUDGES`` (endpoint, in process) gives a ``Judge``: no calls yet, not down."""
    eval_settings = _eval_settings(
        settings, judge_base_url=f"http://127.0.0.1:{_free_port()}/v1", judge_model="j"
    )
    generator = ScriptedJudge({}, garble_prompt="", garble_on="") if backend == "local" else None
    judge = JUDGES[backend](eval_settings, generator)  # type: ignore[arg-type]
    assert (judge.calls, judge.errors, judge.down) == (0, {}, None)
    assert judge.url == (
        str(eval_settings.judge_base_url) if backend == "openai" else "local generator judge"
    )
    asyncio.run(judge.aclose())


def test_scoring_leaves_tiktoken_cache_dir_alone(settings, embedder, guard, monkeypatch):
    """LlamaIndex loads its bundled encodings only while TIKTOKEN_CACHE_DIR is unset: never set it."""
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    score_ragas(_results()[:1], SAMPLES, embedder=embedder, guard=guard, eval_settings=settings.eval)
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_the_default_local_judge_is_the_base_model_without_the_reader_adapter(
    settings: Any, tmp_path: Any
) -> None:
    """With no judge endpoint, RAGAS judges with the generator's base model: the packaged reader
    adapter writes short answers, not RAGAS's JSON. The bare default shares its one loaded model."""
    from eval.runner import local_judge
    from rag_app.rag import RAG
    from rag_app.settings import DEFAULT_GENERATOR, Settings

    defaults = Settings(cache_dir=settings.cache_dir, data_dir=tmp_path / "data")
    assert defaults.eval.judge_local and defaults.generator.adapter == "auto"
    plain = defaults.model_copy(deep=True)
    plain.generator.adapter = "none"
    bare = RAG(tmp_path / "index", plain)
    assert local_judge(bare) is bare.generator  # no second copy of the model in memory
    with_adapter = defaults.model_copy(deep=True)
    with_adapter.generator.adapter = "packaged"
    rag = RAG(tmp_path / "index", with_adapter)
    judge = local_judge(rag)
    assert judge.model_id == DEFAULT_GENERATOR and judge.adapter_id is None
    assert rag.generator.adapter_id == "qwen2.5-coder-0.5b-reader"  # the answers still use it
