"""From a question to a grounded :class:`Answer`: retrieve, prompt, generate, check, cite.

The answerer abstains instead of inventing: before generating when no passage is close
enough to the question, and after generating when the guard finds the answer unsupported
(it then shows the closest passages). Sentences without a citation get the number of the
passage that supports them best, so every sentence of a shown answer cites a source, and
a sentence whose cited source does not support it is flagged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag_app.answer import Answer, Citation, Grounding
from rag_app.documents import Hit
from rag_app.errors import QueryError
from rag_app.generation.base import Completion, Generator, Message
from rag_app.prompting import NOT_FOUND, Prompt, build_prompt, cited_numbers, is_not_found
from rag_app.retrieval import Filters, HybridRetriever
from rag_app.settings import Settings

if TYPE_CHECKING:
    from rag_app.guard import Guard

MAX_QUESTION_CHARS = 8_000
NO_SUPPORTED_ANSWER = "I could not find a supported answer in the documents."


@dataclass
class _Draft:
    question: str
    hits: list[Hit]
    prompt: Prompt | None
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
        self, retriever: HybridRetriever, generator: Generator, guard: Guard | None, settings: Settings
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.guard = guard
        self.settings = settings

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """Answer ``question``; ``history`` are earlier chat turns, ``retrieval_query`` what to search for."""
        draft = self._prepare(question, k, history, retrieval_query, filters)
        if draft.prompt is None:
            return self._abstain(draft, "no passage in the documents is close to the question")
        g = self.settings.generator
        t0 = time.perf_counter()
        completion = self.generator.generate(
            draft.prompt.messages, max_new_tokens=g.max_new_tokens, temperature=g.temperature
        )
        draft.timings["generation"] = time.perf_counter() - t0
        draft.timings["first_token"] = completion.timings.get("first_token", draft.timings["generation"])
        return self._finish(draft, completion)

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Sequence[Message] = (),
        retrieval_query: str | None = None,
        filters: Filters | None = None,
    ) -> AnswerStream:
        """Like :meth:`ask`, but yields text pieces as they are generated; ``.answer`` is set at the end."""
        draft = self._prepare(question, k, history, retrieval_query, filters)
        return AnswerStream(self, draft)

    # -- steps ----------------------------------------------------------------------------
    def _prepare(
        self,
        question: str,
        k: int | None,
        history: Sequence[Message],
        retrieval_query: str | None,
        filters: Filters | None,
    ) -> _Draft:
        question = check_question(question)
        t0 = time.perf_counter()
        hits = self.retriever.search(retrieval_query or question, k, filters=filters)
        draft = _Draft(question, hits, None)
        draft.started = t0
        draft.timings["retrieval"] = time.perf_counter() - t0
        if hits and self._close_enough(hits):
            draft.prompt = build_prompt(
                question,
                hits,
                count_tokens=self.generator.count_tokens,
                budget_tokens=self.settings.generator.context_tokens,
                history=history,
            )
        return draft

    def _close_enough(self, hits: Sequence[Hit]) -> bool:
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if not dense:  # BM25-only retrieval: no calibrated similarity to judge by
            return True
        return max(dense) >= self.settings.guard.min_retrieval_score

    def _finish(self, draft: _Draft, completion: Completion) -> Answer:
        assert draft.prompt is not None
        sources = draft.prompt.sources
        text = completion.text.strip()
        citations = _citations(sources)
        answer = Answer(
            question=draft.question,
            text=text,
            citations=citations,
            grounding=None,
            timings=draft.timings,
            model=completion.model or self.generator.model_id,
            adapter=completion.adapter if completion.adapter is not None else self.generator.adapter_id,
            usage={
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
        )
        if not text or is_not_found(text):
            answer.text = NOT_FOUND
            answer.abstained = True
            answer.abstain_reason = "the model found no answer in the passages" if text else "empty answer"
            return self._done(answer, draft)
        if self.guard is not None and self.settings.guard.enabled:
            t0 = time.perf_counter()
            grounding = self.guard.check(text, [h.text for h in sources], cited=None, context="")
            draft.timings["guard"] = time.perf_counter() - t0
            answer.text, grounding = _cite_every_sentence(text, grounding, len(sources))
            answer.grounding = grounding
            if grounding.score < self.settings.guard.min_grounding:
                answer.abstained = True
                answer.abstain_reason = (
                    f"the answer is not supported by the documents (grounding {grounding.score:.2f} "
                    f"< guard.min_grounding {self.settings.guard.min_grounding})"
                )
                answer.text = NO_SUPPORTED_ANSWER
        used = set(cited_numbers(answer.text))
        for citation in answer.citations:
            citation.cited = citation.number in used
        return self._done(answer, draft)

    def _abstain(self, draft: _Draft, reason: str) -> Answer:
        answer = Answer(
            question=draft.question,
            text=NOT_FOUND,
            citations=_citations(draft.hits),
            grounding=None,
            abstained=True,
            abstain_reason=reason,
            timings=draft.timings,
            model=self.generator.model_id,
            adapter=self.generator.adapter_id,
        )
        return self._done(answer, draft)

    @staticmethod
    def _done(answer: Answer, draft: _Draft) -> Answer:
        answer.timings["total"] = time.perf_counter() - draft.started
        return answer


class AnswerStream:
    """Iterate for text pieces; afterwards :attr:`answer` holds the checked :class:`Answer`."""

    def __init__(self, answerer: Answerer, draft: _Draft) -> None:
        self._answerer = answerer
        self._draft = draft
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        draft = self._draft
        if draft.prompt is None:
            self.answer = self._answerer._abstain(
                draft, "no passage in the documents is close to the question"
            )
            yield self.answer.text
            return
        g = self._answerer.settings.generator
        t0 = time.perf_counter()
        pieces: list[str] = []
        for piece in self._answerer.generator.stream(
            draft.prompt.messages, max_new_tokens=g.max_new_tokens, temperature=g.temperature
        ):
            if not pieces:
                draft.timings["first_token"] = time.perf_counter() - t0
            pieces.append(piece)
            yield piece
        draft.timings["generation"] = time.perf_counter() - t0
        generator = self._answerer.generator
        text = "".join(pieces)
        completion = Completion(
            text=text,
            # the messages' own tokens (the chat template adds a few more)
            prompt_tokens=sum(generator.count_tokens(m["content"]) for m in draft.prompt.messages),
            completion_tokens=generator.count_tokens(text) if text else 0,
            model=generator.model_id,
            adapter=generator.adapter_id,
        )
        self.answer = self._answerer._finish(draft, completion)


def _citations(hits: Sequence[Hit]) -> list[Citation]:
    return [
        Citation(
            number=n,
            source=hit.source,
            page=hit.page,
            start=hit.start,
            end=hit.end,
            chunk_id=hit.chunk_id,
            score=hit.score,
            text=hit.text,
            heading_path=hit.heading_path,
        )
        for n, hit in enumerate(hits, start=1)
    ]


def _cite_every_sentence(text: str, grounding: Grounding, n_sources: int) -> tuple[str, Grounding]:
    """Give each supported sentence that cites nothing the ``[n]`` of its best evidence.

    Flagged sentences stay uncited: pointing them at a passage would claim support the
    guard did not find. Sentence spans are moved to match the new text.
    """
    pieces: list[str] = []
    cursor = shift = 0
    for sentence in grounding.sentences:
        pieces.append(text[cursor : sentence.start])
        body = text[sentence.start : sentence.end]
        cursor = sentence.end
        if not sentence.citations and not sentence.flagged and sentence.evidence:
            number = sentence.evidence[0]
            if number <= n_sources:
                body = _insert_mark(body, f" [{number}]")
                sentence.citations = [number]
        start = sentence.start + shift
        shift += len(body) - (sentence.end - sentence.start)
        sentence.start, sentence.end, sentence.text = start, start + len(body), body
        pieces.append(body)
    pieces.append(text[cursor:])
    return "".join(pieces), grounding


def _insert_mark(sentence: str, mark: str) -> str:
    """``"Paris is the capital."`` -> ``"Paris is the capital [1]."``"""
    body = sentence.rstrip()
    tail = sentence[len(body) :]
    if body and body[-1] in ".!?":
        return body[:-1] + mark + body[-1] + tail
    return body + mark + tail
