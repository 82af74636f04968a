"""Metrics for the guard and the trivial baselines it must beat (numpy; AUROC from scikit-learn).

Scores are probabilities of "supported". The metrics treat *hallucinated* (not supported) as the
positive class, as hallucination detectors are usually reported: F1 is the F1 of finding the
hallucinated rows, AUROC how well ``1 - score`` ranks them first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from finetune.guard.data import Example
from rag_app.errors import RagAppError
from rag_app.guard.text import tokens


def auroc(hallucinated: np.ndarray, risk: np.ndarray) -> float:
    """Area under the ROC curve of ``risk`` for the positives in ``hallucinated`` (ties count half).

    NaN when only one class is present (the curve is undefined there).
    """
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        raise RagAppError("measuring the guard needs scikit-learn: pip install 'rag-app[train]'") from None
    y = np.asarray(hallucinated, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(risk, dtype=np.float64)))


def metrics(supported: Sequence[int], score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, F1 (hallucinated = positive) and AUROC of support scores at ``threshold``."""
    y = np.asarray(supported, dtype=int) == 0
    predicted = np.asarray(score) < threshold
    tp = int((predicted & y).sum())
    precision = tp / max(1, int(predicted.sum()))
    recall = tp / max(1, int(y.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": round(float((predicted == y).mean()), 4),
        "f1": round(f1, 4),
        "auroc": round(auroc(y, 1.0 - np.asarray(score, dtype=np.float64)), 4),
        "n": len(y),
    }


def fit_threshold(values: np.ndarray, supported: Sequence[int]) -> tuple[float, int]:
    """The cut and direction (+1: high values mean hallucinated) that maximise train accuracy."""
    y = np.asarray(supported, dtype=int) == 0
    best = (0.0, 0.0, 1)
    for cut in np.unique(values):
        for sign in (1, -1):
            predicted = values >= cut if sign == 1 else values < cut
            accuracy = float((predicted == y).mean())
            if accuracy > best[0]:
                best = (accuracy, float(cut), sign)
    return best[1], best[2]


def baseline_values(examples: Sequence[Example], kind: str) -> np.ndarray:
    """One number per row: ``length`` (words of the claim) or ``unseen`` (share of its words absent
    from the passages and context, lower-cased, unstemmed)."""
    out = []
    for e in examples:
        words = [w.lower() for w in tokens(e.claim)]
        if kind == "length":
            out.append(float(len(words)))
            continue
        seen = {w.lower() for text in (*e.passages, e.context) for w in tokens(text)}
        out.append(sum(w not in seen for w in words) / max(1, len(words)))
    return np.asarray(out, dtype=np.float64)


def baseline(train: Sequence[Example], test: Sequence[Example], kind: str) -> dict[str, float]:
    """Metrics of a one-number threshold baseline fitted on ``train`` and measured on ``test``."""
    cut, sign = fit_threshold(baseline_values(train, kind), [e.supported for e in train])
    values = baseline_values(test, kind)
    hallucinated = values >= cut if sign == 1 else values < cut
    # as a support score: 0 where the baseline says hallucinated; AUROC uses the raw value
    result = metrics([e.supported for e in test], np.where(hallucinated, 0.0, 1.0))
    result["auroc"] = round(auroc(np.array([e.supported == 0 for e in test]), sign * values), 4)
    return result
