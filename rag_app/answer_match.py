"""Does an answer match a gold answer? SQuAD v1.1's normalisation, exact match and token F1.

Pure string functions shared by the evaluation (:mod:`eval.answer_metrics`) and the training data
builders (:mod:`finetune.preferences`), which may both import ``rag_app`` but not each other.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, squash white space (SQuAD v1.1 evaluate.py)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when both normalise to the same text, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    """F1 of the normalised words the prediction shares with the truth (SQuAD's token F1)."""
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_over_truths(metric: Callable[[str, str], float], prediction: str, truths: Sequence[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers (as SQuAD scores)."""
    return max((metric(prediction, t) for t in truths), default=0.0)


def contains_truth(prediction: str, truths: Sequence[str]) -> bool:
    """True when a gold answer, normalised, is inside the normalised prediction (a sentence
    answer that holds the gold span is right for a reader even when its F1 is low)."""
    clean = normalize_answer(prediction)
    return any(normalize_answer(t) and normalize_answer(t) in clean for t in truths)
