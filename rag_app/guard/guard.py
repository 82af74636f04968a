"""The hallucination guard: is each sentence of an answer supported by the passages it was given?

Per sentence: lexical features (which of its words, names and numbers the sources contain, how
much of it the best-matching source sentences cover) and embedding features (cosine to the
closest source sentences) go into a small tree model (:mod:`rag_app.guard.model`). Sources are
compared sentence by sentence, so long passages are never truncated. Only the claim sentences and
the few source sentences that match each claim best are embedded: about 18 short texts for a
three-sentence cited answer over five passages, which is most of a check's time
(``bench/guard.py`` measures it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag_app.answer import Grounding, SentenceSupport
from rag_app.embeddings.base import Embedder
from rag_app.guard.features import Item, Plan, Sources, featurize
from rag_app.guard.model import DEFAULT_MODEL, TreeModel
from rag_app.guard.text import (
    Span,
    is_claim,
    parse_citations,
    split_sentences,
    strip_citations,
    tokens,
)

NOT_SUPPORTED = "not supported by the sources"
WRONG_CITATION = "cited source does not support it"
EVIDENCE_MARGIN = 0.05
"""Passages whose best sentence is this close (in cosine) to the best one also count as evidence."""
CACHE_SIZE = 4096
"""Embeddings kept between checks (passages repeat across the questions of a chat)."""
SCORE_BATCH = 256
"""Rows :meth:`Guard.score` featurizes per embedding call."""
SHORT_WORDS = 10
"""Claims of at most this many words are short (factoid answers): see :attr:`Guard.short_threshold`."""


@dataclass
class _Sentence:
    span: Span
    claim: bool
    citations: list[int]


class Guard:
    """Scores how well each sentence of an answer is supported by the passages.

    Construction is cheap; the model file loads on first use (or :meth:`warm_up`).
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        model_path: Path | None = None,
        threshold: float = 0.5,
        short_threshold: float | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold} (guard.threshold)")
        if short_threshold is not None and not 0.0 <= short_threshold <= 1.0:
            raise ValueError(
                f"short_threshold must be within [0, 1], got {short_threshold} (guard.short_threshold)"
            )
        self.embedder = embedder
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self.threshold = threshold
        self._short_threshold = short_threshold
        self._model: TreeModel | None = None
        self._rank: dict[str, int] | None = None
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def model(self) -> TreeModel:
        """The tree model (loaded on first use)."""
        if self._model is None:
            self._model = TreeModel.load(self.model_path)
        return self._model

    @property
    def rank(self) -> dict[str, int]:
        """Word -> frequency rank in the embedder's vocabulary (WordPiece vocabularies list whole
        words roughly by frequency after the special and single-character tokens)."""
        if self._rank is None:
            vocab = self.embedder.tokenizer.get_vocab()
            words = sorted((i, w) for w, i in vocab.items() if w.isalpha() and w.islower() and len(w) > 1)
            self._rank = {w: r for r, (_, w) in enumerate(words)}
        return self._rank

    @property
    def short_threshold(self) -> float:
        """The threshold for short claims (a few words: factoid answers), calibrated on HaluEval QA
        (``bench/guard.py --calibrate-qa``) unless set; the sentence threshold when uncalibrated."""
        if self._short_threshold is not None:
            return self._short_threshold
        return float(self.model.info.get("short_threshold", self.threshold))

    def threshold_for(self, claim: str) -> float:
        """The support a claim needs: short ones are held to :attr:`short_threshold`."""
        return self.short_threshold if len(tokens(strip_citations(claim))) <= SHORT_WORDS else self.threshold

    def warm_up(self) -> None:
        """Load the model and the embedder now rather than on the first check."""
        _ = self.model, self.rank
        self.embedder.embed_query("warm up")

    def check(
        self,
        answer: str,
        passages: Sequence[str],
        *,
        cited: Sequence[Sequence[int]] | None = None,
        context: str = "",
    ) -> Grounding:
        """Score each sentence of ``answer`` against ``passages`` (numbered from 1 in citations).

        ``cited`` gives each sentence's cited passage numbers (in sentence order); without it
        the ``[n]`` marks in the sentences are read. A sentence whose cited passages do not
        support it is flagged ``cited source does not support it`` when another passage does,
        else ``not supported by the sources``. Questions, abstentions ("I could not find ...")
        and sentences without a content word carry no claim: they score 1 and are never flagged.
        ``context`` is extra grounding text, such as the dialogue so far.
        """
        sentences = self._sentences(answer, cited)
        sources = Sources(passages, context, self.rank)
        claims = [s for s in sentences if s.claim]
        items = [Item([s.span.text for s in claims], sources)]
        scoped = [s for s in claims if s.citations]
        for s in scoped:
            valid = frozenset(n - 1 for n in s.citations if 0 < n <= len(passages))
            items.append(Item([s.span.text], sources, valid))
        rows, plans, cosines = featurize(items, self._embed)
        overall = float(self.model.score_answers([rows[0]])[0]) if claims else 1.0
        support = dict(zip((id(s) for s in claims), self.model.score_sentences(rows[0]), strict=True))
        by_citation = {
            id(s): float(self.model.score_sentences(r)[0]) for s, r in zip(scoped, rows[1:], strict=True)
        }
        out = []
        for s in sentences:
            result = SentenceSupport(s.span.text, s.span.start, s.span.end, 1.0, citations=list(s.citations))
            result.threshold = self.threshold
            if s.claim:
                k = claims.index(s)
                everywhere = float(support[id(s)])
                result.evidence, result.evidence_text = _evidence(sources, plans[0][k], cosines[0][k])
                result.score = by_citation.get(id(s), everywhere)
                needed = self.threshold_for(s.span.text)
                result.threshold = needed
                if result.score < needed:
                    result.flagged = True
                    moved = id(s) in by_citation and everywhere >= needed
                    result.reason = WRONG_CITATION if moved else NOT_SUPPORTED
            out.append(result)
        return Grounding(score=round(overall, 4), sentences=out, threshold=self.threshold)

    def score(
        self, claims: Sequence[str], sources: Sequence[str], contexts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Probability that each claim is supported by its source (and context), as one answer."""
        if len(claims) != len(sources) or (contexts is not None and len(contexts) != len(claims)):
            raise ValueError(
                f"claims ({len(claims)}), sources ({len(sources)}) and contexts "
                f"({'none' if contexts is None else len(contexts)}) must have the same length"
            )
        out = np.ones(len(claims))
        for first in range(0, len(claims), SCORE_BATCH):
            rows = self.answer_rows(
                claims[first : first + SCORE_BATCH],
                [[s] for s in sources[first : first + SCORE_BATCH]],
                contexts[first : first + SCORE_BATCH] if contexts is not None else None,
            )
            out[first : first + len(rows)] = self.model.score_answers(rows)
        return out

    def answer_rows(
        self,
        claims: Sequence[str],
        passages: Sequence[Sequence[str]],
        contexts: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """Feature rows of the claim sentences of each answer, against its passages (one embed call)."""
        built: dict[tuple[tuple[str, ...], str], Sources] = {}
        items = []
        for i, claim in enumerate(claims):
            key = (tuple(passages[i]), contexts[i] if contexts is not None else "")
            if key not in built:
                built[key] = Sources(*key, rank=self.rank)
            sentences = [s.span.text for s in self._sentences(claim, None) if s.claim]
            items.append(Item(sentences, built[key]))
        return featurize(items, self._embed)[0]

    @staticmethod
    def _sentences(answer: str, cited: Sequence[Sequence[int]] | None) -> list[_Sentence]:
        spans = split_sentences(answer)
        if cited is not None and len(cited) != len(spans):
            raise ValueError(f"cited has {len(cited)} entries but the answer has {len(spans)} sentences")
        return [
            _Sentence(
                span, is_claim(span.text), list(cited[i]) if cited is not None else parse_citations(span.text)
            )
            for i, span in enumerate(spans)
        ]

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, embedding only those not in the cache (in one call)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vector in zip(missing, self.embedder.embed_documents(missing), strict=True):
                self._vectors[text] = vector
        for text in texts:
            self._vectors.move_to_end(text)
        while len(self._vectors) > max(CACHE_SIZE, len(texts)):
            self._vectors.popitem(last=False)
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)


def _evidence(sources: Sources, plan: Plan, cosines: dict[int, float]) -> tuple[list[int], str]:
    """Passage numbers (1-based) whose sentences match the claim best, and the best such sentence.

    A unit's match is its cosine to the claim plus the share of the claim's content words it holds:
    cosines of close candidates shift a little with their batch (int8 activations), words do not.
    """
    content = set(plan.bag.content)

    def match(u: int) -> float:
        cover = len(content & sources.units[u].stem_set) / len(content) if content else 0.0
        return cosines[u] + cover

    ranked = sorted((u for u in plan.candidates if sources.units[u].passage >= 0), key=lambda u: -match(u))
    if not ranked:
        return [], ""
    best = match(ranked[0])
    numbers = [sources.units[u].passage + 1 for u in ranked if match(u) >= best - EVIDENCE_MARGIN]
    return list(dict.fromkeys(numbers))[:3], sources.units[ranked[0]].text
