"""Is the answer right? The guard's lexical support, the generator's own yes/no verdict and its
confidence, combined by a logistic model fitted on real answers.

The lexical guard (:class:`rag_app.guard.Guard`) asks whether the answer's words are in the sources;
a short wrong answer ("2013" where the passage says "2013" about something else) passes it. So the
verdict adds what says whether the answer fits the *question*:

* ``verifier``: P(Yes) when the generator is asked, after its answer, whether the answer is right
  and stated in the cited source (:data:`rag_app.prompting.VERIFY_QUESTION`);
* ``mean_logprob`` / ``min_logprob``: how sure the generator was of the answer's tokens;
* ``span``: the answer is copied from its cited source (1), from another source (0.5), or not (0);
* ``question_cover``: how many of the question's content words the sentence around that span holds
  (a right span sits among the question's words; a distractor span rarely does);
* ``lexical``: the lexical guard's support of the answer;
* ``cites_best``: the answer cites source [1], the best retrieved passage.

``retrieval`` (the best passage's similarity) and ``answer_words`` (its length) are logged with
them but not weighed: they describe the corpus and the question type more than the answer.

The weights are fitted on answers of the packaged generator to SQuAD dev articles 1-16 only
(``bench/answer.py --fit-verdict``); articles 17-24 measure it. Backends without a verifier or
log-probabilities use a second set of weights fitted without those features.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_app.errors import RagAppError
from rag_app.guard.text import is_content, split_sentences, stem, tokens

FEATURES = (
    "lexical",
    "verifier",
    "mean_logprob",
    "min_logprob",
    "span",
    "question_cover",
    "cites_best",
)
"""What the verdict weighs. ``retrieval`` and ``answer_words`` are computed and logged but not
weighed: a passage's similarity and an answer's length depend on the corpus and the question type,
so weights fitted on SQuAD would withhold right answers elsewhere (long "how" answers, FAQ pages)."""
LEXICAL_FEATURES = ("lexical", "span", "question_cover", "cites_best")
"""What every backend can compute (no verifier, no log-probabilities)."""
DEFAULT_MODEL = Path(__file__).with_name("verdict-model.json")
FORMAT = "rag-app-verdict"
_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]")


@dataclass
class Logistic:
    """``sigmoid(bias + sum(weight * (x - mean) / scale))`` over named features."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    scales: tuple[float, ...]

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.bias
        for name, w, mean, scale in zip(self.features, self.weights, self.means, self.scales, strict=True):
            z += w * (float(values[name]) - mean) / (scale or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(w, 6) for w in self.weights],
            "bias": round(self.bias, 6),
            "means": [round(m, 6) for m in self.means],
            "scales": [round(s, 6) for s in self.scales],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Logistic:
        return cls(
            tuple(data["features"]),
            tuple(float(w) for w in data["weights"]),
            float(data["bias"]),
            tuple(float(m) for m in data["means"]),
            tuple(float(s) for s in data["scales"]),
        )


@dataclass
class VerdictModel:
    """The two logistic models (with and without the generator's own signals) and the threshold."""

    full: Logistic
    lexical: Logistic
    threshold: float = 0.5
    """Answers the full model scores below this are withheld (``guard.min_grounding`` overrides it)."""
    lexical_threshold: float = 0.5
    """The same for the lexical model."""
    info: dict[str, Any] = field(default_factory=dict)
    """How it was fitted (``generator``, ``adapter``: whose verifier and confidence it learned)."""

    def applies_to(self, model_id: str, adapter_id: str | None) -> bool:
        """True when the full model was fitted on this generator's own signals (P(Yes) and
        log-probabilities are calibrated per model: another generator gets the lexical model)."""
        return self.info.get("generator") == model_id and self.info.get("adapter") == adapter_id

    def decide(self, values: Mapping[str, float | None]) -> tuple[float, float]:
        """P(the answer is right) and the threshold it is held to, from the features present
        (``None``: the backend lacks it, and the lexical model decides)."""
        present = {k: float(v) for k, v in values.items() if v is not None}
        if all(name in present for name in self.full.features):
            return self.full.probability(present), self.threshold
        return self.lexical.probability(present), self.lexical_threshold

    def probability(self, values: Mapping[str, float | None]) -> float:
        return self.decide(values)[0]

    def save(self, path: Path) -> None:
        data = {
            "format": FORMAT,
            "full": self.full.to_json(),
            "lexical": self.lexical.to_json(),
            "threshold": round(self.threshold, 4),
            "lexical_threshold": round(self.lexical_threshold, 4),
            "info": self.info,
        }
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> VerdictModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RagAppError(f"verdict model {path} cannot be read: {exc}") from None
        if data.get("format") != FORMAT:
            raise RagAppError(f"{path}: not a verdict model ({FORMAT})")
        return cls(
            Logistic.from_json(data["full"]),
            Logistic.from_json(data["lexical"]),
            float(data.get("threshold", 0.5)),
            float(data.get("lexical_threshold", 0.5)),
            dict(data.get("info", {})),
        )


def answer_features(
    *,
    question: str,
    answer: str,
    passages: Sequence[str],
    cited: Sequence[int],
    lexical: float,
    retrieval: float | None,
    verifier: float | None = None,
    token_logprobs: Sequence[float] = (),
) -> dict[str, float | None]:
    """The verdict's inputs for one answer (``cited``: its 1-based source numbers)."""
    span, cover = span_and_cover(question, answer, passages, cited)
    logprobs = [max(-10.0, lp) for lp in token_logprobs]
    return {
        "lexical": float(lexical),
        "verifier": None if verifier is None else float(verifier),
        "mean_logprob": sum(logprobs) / len(logprobs) if logprobs else None,
        "min_logprob": min(logprobs) if logprobs else None,
        "span": span,
        "question_cover": cover,
        "retrieval": float(retrieval) if retrieval is not None else 0.0,
        "cites_best": 1.0 if 1 in cited else 0.0,
        "answer_words": min(len(tokens(_CITATION.sub("", answer))), 30) / 30,
    }


def span_and_cover(
    question: str, answer: str, passages: Sequence[str], cited: Sequence[int]
) -> tuple[float, float]:
    """``span``: 1 when the answer's words are a run of a cited passage's words (0.5: another
    passage's, 0: none); ``question_cover``: the share of the question's content words in the
    sentences around that run (the sentence before it included: a heading or an FAQ question)."""
    needle = [w.lower() for w in tokens(_CITATION.sub("", answer))]
    if not needle or len("".join(needle)) < 2:
        return 0.0, 0.0
    q_stems = {stem(w.lower()) for w in tokens(asked_part(question)) if is_content(w.lower())}
    cited_index = [n - 1 for n in cited if 0 < n <= len(passages)]
    order = cited_index + [i for i in range(len(passages)) if i not in cited_index]
    for i in order:
        words: list[str] = []
        sentence_of: list[int] = []
        sentences = split_sentences(passages[i])
        for j, sentence in enumerate(sentences):
            found = [w.lower() for w in tokens(sentence.text)]
            words += found
            sentence_of += [j] * len(found)
        best: float | None = None
        for at in _find_runs(words, needle):  # "No" may be in several sentences: the one by the question
            first, last = sentence_of[at], sentence_of[at + len(needle) - 1]
            window = {
                stem(w.lower())
                for sentence in sentences[max(0, first - 1) : last + 1]
                for w in tokens(sentence.text)
            }
            cover = len(q_stems & window) / len(q_stems) if q_stems else 0.0
            best = cover if best is None else max(best, cover)
        if best is not None:
            return (1.0 if i in cited_index else 0.5), best
    return 0.0, 0.0


def _find_runs(words: Sequence[str], needle: Sequence[str]) -> list[int]:
    """Every start of ``needle`` as a run of consecutive ``words``."""
    n = len(needle)
    return [
        k
        for k in range(len(words) - n + 1)
        if words[k] == needle[0] and list(words[k : k + n]) == list(needle)
    ]


def asked_part(question: str) -> str:
    """The sentence that asks: "I am a nurse. What causes the tides?" -> "What causes the tides?".

    Context a person puts before the question ("I am a nurse.") need not be in the passage that
    answers it; only the asking sentence's words count towards ``question_cover``.
    """
    sentences = [s.text for s in split_sentences(question) if s.text.strip()]
    asking = [s for s in sentences if "?" in s]
    return asking[-1] if asking else question
