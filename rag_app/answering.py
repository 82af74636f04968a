"""From a question to a checked :class:`Answer`: retrieve, prompt, generate, clean, cite, verify, decide.

The answerer abstains instead of inventing: before generating when no passage is close enough to
the question, when the model says the sources lack the answer (in any phrasing), and after
generating when the guard finds the answer unsupported. The guard's verdict combines its lexical
support with the generator's own yes/no judgement and confidence (:mod:`rag_app.guard.verdict`);
the overall score never exceeds the weakest shown sentence's support.

What the client sees is decided by ``guard.on_unsupported``: ``withhold`` (default) shows the
abstention sentence and keeps the draft in :attr:`Answer.draft`; ``mark`` shows the draft marked
unsupported; ``pass`` shows it as it is.

Streaming releases text as the guard clears it: every sentence but the last as soon as it is
complete and its lexical check passes, the last one after the whole answer is checked (so a
one-sentence answer arrives checked). If the final verdict withholds text that was already sent,
the stream ends with an in-band notice that it was withdrawn, then the abstention.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag_app.answer import Answer, Citation, Grounding
from rag_app.answer_text import clean_answer, has_content
from rag_app.citing import (
    citations_of,
    cite_every_sentence,
    drop_invalid_citations,
    mark_cited,
    snap_spans,
    source_ids,
)
from rag_app.documents import Hit
from rag_app.errors import GeneratorError, QueryError
from rag_app.generation.base import Completion, Generator, Message, Verifier
from rag_app.guard.text import split_sentences
from rag_app.language import detect_language
from rag_app.not_found import is_not_found, not_found_sentence, reason
from rag_app.prompting import Prompt, build_prompt, cited_numbers, verify_messages
from rag_app.retrieval import Filters, Retriever
from rag_app.settings import Settings

if TYPE_CHECKING:
    from rag_app.guard import Guard
    from rag_app.guard.verdict import VerdictModel

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 8_000


@dataclass
class _Draft:
    question: str
    language: str
    hits: list[Hit]
    prompt: Prompt | None
    max_new_tokens: int = 256
    temperature: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def check_question(question: str) -> str:
    """The question stripped; :class:`QueryError` when it is empty or too long."""
    question = question.strip()
    if not question:
        raise QueryError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise QueryError(
            f"the question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}. "
            "Ask a shorter question, or ingest the long text as a document and ask about it"
        )
    return question


class Answerer:
    """Answers questions over one retriever with one generator and (optionally) the guard."""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator,
        guard: Guard | None,
        settings: Settings,
        verdict: VerdictModel | None = None,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.guard = guard
        self.settings = settings
        self._verdict = verdict

    @property
    def verdict(self) -> VerdictModel:
        """The model that turns guard, verifier and confidence into P(right) (loaded on first use):
        ``guard.verdict_path``, else the adapter's own (fitted on its answers by the retraining
        loop), else the packaged one."""
        if self._verdict is None:
            from rag_app.generation import adapter_verdict
            from rag_app.guard.verdict import DEFAULT_MODEL, VerdictModel

            path = self.settings.guard.verdict_path or adapter_verdict(self.settings) or DEFAULT_MODEL
            self._verdict = VerdictModel.load(path)
        return self._verdict

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        filters: Filters | None = None,
        on_step: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Answer:
        """Answer ``question``; ``history`` are earlier chat turns, ``retrieval_query`` what to search for.

        ``max_tokens`` (at most ``generator.max_new_tokens``) and ``temperature`` replace the
        settings' for this call. ``on_step`` is called with ``searching``, ``writing`` and
        ``checking`` as each step starts (a progress display)."""
        step = on_step or (lambda _name: None)
        step("searching")
        draft = self._prepare(question, k, history, retrieval_query, filters, max_tokens, temperature)
        if draft.prompt is None:
            return self._abstain(draft, "no_close_passage", self._retrieval_detail(draft.hits))
        step("writing")
        t0 = time.perf_counter()
        completion = self.generator.generate(
            draft.prompt.messages, max_new_tokens=draft.max_new_tokens, temperature=draft.temperature
        )
        draft.timings["generation"] = time.perf_counter() - t0
        draft.timings["first_token"] = completion.timings.get("first_token", draft.timings["generation"])
        step("checking")
        return self.finish(draft, completion)

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        filters: Filters | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AnswerStream:
        """Like :meth:`ask`, yielding checked text as it is cleared; ``.answer`` is set at the end."""
        draft = self._prepare(question, k, history, retrieval_query, filters, max_tokens, temperature)
        return AnswerStream(self, draft)

    def prompt_for(
        self, question: str, *, k: int | None = None, filters: Filters | None = None
    ) -> Prompt | None:
        """The prompt :meth:`ask` would send for ``question`` (its ``sources`` are the passages
        behind ``[1]``, ``[2]``, ...), nothing generated; ``None`` when no passage is close enough
        and :meth:`ask` would abstain before generating."""
        return self._prepare(question, k, (), None, filters).prompt

    # -- steps ----------------------------------------------------------------------------
    def _prepare(
        self,
        question: str,
        k: int | None,
        history: Sequence[Message],
        retrieval_query: str | None,
        filters: Filters | None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> _Draft:
        question = check_question(question)
        t0 = time.perf_counter()
        hits = self.retriever.search(retrieval_query or question, k, filters=filters)
        g = self.settings.generator
        draft = _Draft(
            question,
            detect_language(question),
            hits,
            None,
            max_new_tokens=g.max_new_tokens if max_tokens is None else min(g.max_new_tokens, max_tokens),
            temperature=g.temperature if temperature is None else temperature,
        )
        draft.started = t0
        draft.timings["retrieval"] = time.perf_counter() - t0
        if hits and self._close_enough(hits):
            draft.prompt = build_prompt(
                question,
                hits,
                count_tokens=self.generator.count_tokens,
                budget_tokens=self.settings.generator.context_tokens,
                history=history,
                language=draft.language,
            )
        return draft

    def _close_enough(self, hits: Sequence[Hit]) -> bool:
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if not dense:  # BM25-only retrieval: no calibrated similarity to judge by
            return True
        return max(dense) >= self.settings.guard.min_retrieval_score

    def _retrieval_detail(self, hits: Sequence[Hit]) -> str:
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if not hits:
            return "retrieval returned no passage"
        best = max(dense) if dense else float("nan")
        floor = self.settings.guard.min_retrieval_score
        return f"best passage similarity {best:.2f} < guard.min_retrieval_score {floor}"

    def finish(self, draft: _Draft, completion: Completion) -> Answer:
        """Turn the generator's completion into the answer the user sees (or an abstention)."""
        assert draft.prompt is not None
        sources = draft.prompt.sources
        raw = completion.text.strip()
        answer = self._answer(draft, text=raw, citations=citations_of(sources), completion=completion)
        if not has_content(raw):
            return self._withhold(answer, draft, "empty_answer", f"the generator returned {raw!r}")
        if is_not_found(raw):
            return self._withhold(answer, draft, "model_found_none", "the generator said the sources lack it")
        cleaned = clean_answer(raw, draft.question, source_ids(sources))
        text = drop_invalid_citations(cleaned.text, len(sources))
        if not has_content(text):
            return self._withhold(answer, draft, "empty_answer", f"nothing but {raw!r} was left")
        answer.text = text
        if text != raw:
            answer.draft = raw
        if self.guard is None or not self.settings.guard.enabled:
            mark_cited(answer)
            return self._done(answer, draft)
        t0 = time.perf_counter()
        grounding = self.guard.check(text, [h.text for h in sources], cited=None, context="")
        answer.text, grounding = cite_every_sentence(text, grounding, len(sources))
        snap_spans(grounding, sources)
        draft.timings["guard"] = time.perf_counter() - t0
        grounding.lexical = grounding.score
        grounding.verifier = self._verify(draft.prompt, raw, completion, draft.timings)
        self._judge(draft, answer, grounding, completion)
        answer.grounding = grounding
        mark_cited(answer)
        if answer.supported:
            return self._done(answer, draft)
        policy = self.settings.guard.on_unsupported
        if policy == "withhold":
            return self._withhold(answer, draft, "unsupported", self._grounding_detail(grounding))
        answer.details = self._grounding_detail(grounding)
        return self._done(answer, draft)

    def _verify(
        self, prompt: Prompt, raw: str, completion: Completion, timings: dict[str, float]
    ) -> float | None:
        """The generator's P(Yes) that its answer is right, when it can say and the verdict uses it."""
        if not self.settings.guard.verifier or not isinstance(self.generator, Verifier):
            return None
        if not self.verdict.applies_to(self.generator.model_id, self.generator.adapter_id):
            return None
        if not completion.token_logprobs:  # the verdict needs both: without them it is the lexical one
            return None
        t0 = time.perf_counter()
        try:
            p_yes = self.generator.verify(verify_messages(prompt, raw), completion=completion)
        except GeneratorError as exc:  # a server without log-probabilities: judge without it
            log.warning("the verifier is unavailable, judging without it: %s", exc)
            return None
        timings["verifier"] = time.perf_counter() - t0
        return p_yes

    def _judge(self, draft: _Draft, answer: Answer, grounding: Grounding, completion: Completion) -> None:
        """Set the verdict: the grounding score, the answer threshold and whether it is supported."""
        from rag_app.guard.verdict import answer_features

        assert draft.prompt is not None
        sources = draft.prompt.sources
        dense = [h.scores["dense"] for h in sources if "dense" in h.scores]
        claims = [s for s in grounding.sentences if s.score < 1.0 or s.evidence]
        features = answer_features(
            question=draft.question,
            answer=answer.text,
            passages=[h.text for h in sources],
            cited=cited_numbers(answer.text),
            lexical=grounding.score,
            retrieval=max(dense) if dense else None,
            verifier=grounding.verifier,
            token_logprobs=completion.token_logprobs if grounding.verifier is not None else (),
        )
        verdict = self.verdict
        if not verdict.applies_to(self.generator.model_id, self.generator.adapter_id):
            features.update(verifier=None, mean_logprob=None, min_logprob=None)
        probability, calibrated = verdict.decide(features)
        weakest = min((s.score for s in claims), default=1.0)
        grounding.features = features
        grounding.score = math.floor(min(probability, weakest) * 10_000) / 10_000  # never rounded up
        threshold = self.settings.guard.min_grounding
        grounding.answer_threshold = calibrated if threshold is None else threshold
        every_sentence_flagged = bool(claims) and all(s.flagged for s in claims)
        answer.supported = grounding.score >= grounding.answer_threshold and not every_sentence_flagged

    def _grounding_detail(self, grounding: Grounding) -> str:
        flagged = len(grounding.flagged)
        return (
            f"grounding {grounding.score:.2f} < answer threshold {grounding.answer_threshold:.2f} "
            f"(guard.min_grounding, or the verdict model's); lexical {grounding.lexical}, "
            f"verifier {grounding.verifier}, {flagged} of {len(grounding.sentences)} sentences flagged"
        )

    def _answer(
        self, draft: _Draft, *, text: str, citations: list[Citation], completion: Completion | None
    ) -> Answer:
        model = (completion.model if completion else "") or self.generator.model_id
        adapter = (
            completion.adapter if completion and completion.adapter is not None else self.generator.adapter_id
        )
        usage = {}
        if completion is not None:
            usage = {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            }
        return Answer(
            question=draft.question,
            text=text,
            citations=citations,
            grounding=None,
            timings=draft.timings,
            model=model,
            adapter=adapter,
            usage=usage,
            language=draft.language,
        )

    def _withhold(self, answer: Answer, draft: _Draft, code: str, details: str) -> Answer:
        """The abstention: the sentence in the question's language, the draft kept for ``--json``."""
        if answer.text and answer.draft is None:
            answer.draft = answer.text
        answer.text = not_found_sentence(draft.language)
        answer.abstained = True
        answer.supported = code != "unsupported"
        answer.abstain_code = code
        answer.abstain_reason = reason(code, draft.language)
        answer.details = details
        for citation in answer.citations:
            citation.cited = False
        return self._done(answer, draft)

    def _abstain(self, draft: _Draft, code: str, details: str) -> Answer:
        answer = self._answer(draft, text="", citations=citations_of(draft.hits), completion=None)
        return self._withhold(answer, draft, code, details)

    @staticmethod
    def _done(answer: Answer, draft: _Draft) -> Answer:
        answer.timings["total"] = time.perf_counter() - draft.started
        return answer


class AnswerStream:
    """Iterate for checked text; afterwards :attr:`answer` holds the :class:`Answer`.

    The text yielded joins to ``answer.text``, unless the final check withdrew text already sent:
    then the stream ends with a notice and the abstention, and ``answer.withdrawn`` is true.
    """

    def __init__(self, answerer: Answerer, draft: _Draft) -> None:
        self._answerer = answerer
        self._draft = draft
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        answerer, draft = self._answerer, self._draft
        if draft.prompt is None:
            self.answer = answerer._abstain(draft, "no_close_passage", answerer._retrieval_detail(draft.hits))
            yield self.answer.text
            return
        t0 = time.perf_counter()
        pieces: list[str] = []
        released = ""
        completion: Completion | None = None
        guard = answerer.settings.guard
        # nothing is held back without a guard, or when it may pass anything: tokens go out as they come
        live = answerer.guard is None or not guard.enabled or guard.on_unsupported == "pass"
        stream = answerer.generator.stream(
            draft.prompt.messages, max_new_tokens=draft.max_new_tokens, temperature=draft.temperature
        )
        while True:
            try:
                piece = next(stream)
            except StopIteration as stop:
                completion = stop.value if isinstance(stop.value, Completion) else None
                break
            if not pieces:
                draft.timings["first_token"] = time.perf_counter() - t0
            pieces.append(piece)
            ready = piece if live else self._clear_sentences("".join(pieces), released)
            if ready:
                released += ready
                yield ready
        draft.timings["generation"] = time.perf_counter() - t0
        generator = answerer.generator
        text = "".join(pieces)
        if completion is None or completion.text != text:
            completion = Completion(
                text=text,
                # the messages' own tokens (the chat template adds a few more)
                prompt_tokens=sum(generator.count_tokens(m["content"]) for m in draft.prompt.messages),
                completion_tokens=generator.count_tokens(text) if text else 0,
                model=generator.model_id,
                adapter=generator.adapter_id,
            )
        answer = answerer.finish(draft, completion)
        self.answer = answer
        if answer.text.startswith(released):
            rest = answer.content[len(released) :]
            if rest:
                yield rest
            return
        if live:  # unguarded: the cleaned text differs from what was sent, but nothing was withdrawn
            return
        answer.withdrawn = True
        yield "\n\n" + reason("withdrawn", draft.language) + " " + answer.text

    def _clear_sentences(self, text: str, released: str) -> str:
        """The complete sentences after ``released`` that the lexical guard clears (never the last)."""
        answerer, draft = self._answerer, self._draft
        guard = answerer.guard
        if guard is None or not answerer.settings.guard.enabled or draft.prompt is None:
            return ""
        if answerer.settings.guard.on_unsupported != "withhold":
            return ""
        spans = split_sentences(text)
        if len(spans) < 3 or is_not_found(text):  # a one- or two-sentence answer waits for the whole check
            return ""
        passages = [h.text for h in draft.prompt.sources]
        out = ""
        for span in spans[:-1]:
            if span.end <= len(released.rstrip()) or not span.text.strip():
                continue
            checked = guard.check(span.text, passages)
            cited, checked = cite_every_sentence(span.text, checked, len(passages))
            if any(s.flagged for s in checked.sentences):
                break  # hold this sentence and everything after it for the final check
            out += (" " if released or out else "") + cited
        return out
