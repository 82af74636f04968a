"""Fit the guard's verdict (:mod:`rag_app.guard.verdict`) on real answers, and pick its threshold.

Input: one row per answered question with the verdict's features (``Answer.grounding.features``,
the answer produced with ``guard.on_unsupported = "pass"`` so nothing is withheld) and whether the
answer was right (SQuAD F1 >= 0.5 against the gold answers, or a gold answer inside it: a sentence
answer holding it is right for a reader; a question whose passage was removed from the index has
no right answer). A logistic regression (scikit-learn, standardised features,
L2) is fitted twice: on every feature, and on the features any backend has. The threshold is
picked on the same rows from three error rates the app is judged by (wrong answers shown, right
answers withheld, answers shown where the documents lack the answer); see :func:`pick_threshold`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.guard.verdict import FEATURES, LEXICAL_FEATURES, Logistic, VerdictModel

RIGHT_F1 = 0.5
"""An answer with SQuAD F1 at least this is labelled right."""


@dataclass(frozen=True)
class Row:
    features: dict[str, float | None]
    f1: float
    answerable: bool
    contains: bool = False
    """A gold answer is inside the answer (SQuAD-normalised)."""

    @property
    def right(self) -> bool:
        return self.answerable and (self.f1 >= RIGHT_F1 or self.contains)

    @property
    def wrong(self) -> bool:
        """Wrong for a reader: no word of a gold answer, and none inside it."""
        return self.f1 == 0 and not self.contains


def fit_logistic(rows: Sequence[Row], names: Sequence[str], c: float = 1.0) -> Logistic:
    """A standardised L2 logistic regression of "right" on ``names``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([[float(r.features[n] or 0.0) for n in names] for r in rows], dtype=np.float64)
    y = np.array([r.right for r in rows], dtype=np.int64)
    if len(set(y.tolist())) < 2:
        raise ValueError("the rows need both right and wrong answers to fit the verdict")
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=1000).fit((x - means) / scales, y)
    return Logistic(
        tuple(names),
        tuple(float(w) for w in model.coef_[0]),
        float(model.intercept_[0]),
        tuple(float(m) for m in means),
        tuple(float(s) for s in scales),
    )


def decision_errors(rows: Sequence[Row], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """The app's error rates if answers scoring below ``threshold`` are withheld.

    ``wrong_shown`` and ``right_withheld`` are shares of the answerable questions (F1 = 0 and no gold
    answer inside, shown; F1 >= 0.8 or a gold answer inside, withheld); ``shown_unanswerable`` is the
    share of removed-passage questions answered.
    """
    answerable = [(r, s) for r, s in zip(rows, scores, strict=True) if r.answerable]
    missing = [(r, s) for r, s in zip(rows, scores, strict=True) if not r.answerable]
    n, m = max(1, len(answerable)), max(1, len(missing))
    return {
        "wrong_shown": sum(s >= threshold and r.wrong for r, s in answerable) / n,
        "right_withheld": sum(s < threshold and (r.f1 >= 0.8 or r.contains) for r, s in answerable) / n,
        "shown_unanswerable": sum(s >= threshold for _, s in missing) / m,
        "shown": sum(s >= threshold for _, s in answerable) / n,
    }


TARGETS = {"wrong_shown": 0.10, "right_withheld": 0.10, "shown_unanswerable": 0.20}
"""The app's targets: at most 10% wrong answers shown and 10% right answers withheld (shares of the
answerable questions), abstention accuracy at least 0.8 where the documents lack the answer."""


def pick_threshold(rows: Sequence[Row], scores: Sequence[float]) -> tuple[float, dict[str, float]]:
    """The threshold (on a 0.01 grid) for the app's targets (:data:`TARGETS`).

    Thresholds that meet every target: the smallest sum of the three error rates. When none does,
    the abstention target is kept as a hard limit (answering where the documents lack the answer is
    the failure a user cannot see) and, among the thresholds that keep it, the one with the smallest
    sum of wrong answers shown and right answers withheld: both cost the user one answer, so neither
    is traded for the other at a discount. When no threshold keeps it, the smallest sum overall.
    """
    best: tuple[tuple[bool, bool, float], float, dict[str, float]] | None = None
    for step in range(5, 96):
        threshold = step / 100
        errors = decision_errors(rows, scores, threshold)
        meets = all(errors[name] <= limit for name, limit in TARGETS.items())
        abstains = errors["shown_unanswerable"] <= TARGETS["shown_unanswerable"]
        cost = errors["wrong_shown"] + errors["right_withheld"]
        if meets or not abstains:
            cost += errors["shown_unanswerable"]
        key = (meets, abstains, -round(cost, 9))  # ties: the lowest threshold, it shows more
        if best is None or key > best[0]:
            best = (key, threshold, errors)
    assert best is not None
    return best[1], best[2]


def auroc(rows: Sequence[Row], scores: Sequence[float]) -> float:
    """Area under the ROC curve of ``scores`` for right (positive) against wrong answers."""
    pos = [s for r, s in zip(rows, scores, strict=True) if r.right]
    neg = [s for r, s in zip(rows, scores, strict=True) if not r.right]
    if not pos or not neg:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def fit_verdict(rows: Sequence[Row], info: dict[str, Any]) -> VerdictModel:
    """Both logistic models and the threshold of the full one, with their fit metrics in ``info``."""
    full = fit_logistic(rows, FEATURES)
    lexical = fit_logistic(rows, LEXICAL_FEATURES)
    model = VerdictModel(full, lexical)
    scores = [model.probability(r.features) for r in rows]
    threshold, errors = pick_threshold(rows, scores)
    lexical_scores = [lexical.probability({k: float(v or 0.0) for k, v in r.features.items()}) for r in rows]
    lexical_threshold, lexical_errors = pick_threshold(rows, lexical_scores)
    model.threshold = threshold
    model.lexical_threshold = lexical_threshold
    model.info = {
        **info,
        "rows": len(rows),
        "right": sum(r.right for r in rows),
        "unanswerable": sum(not r.answerable for r in rows),
        "fit_auroc": round(auroc(rows, scores), 4),
        "fit_errors_at_threshold": {k: round(v, 4) for k, v in errors.items()},
        "lexical_only": {
            "auroc": round(auroc(rows, lexical_scores), 4),
            "threshold": lexical_threshold,
            "errors": {k: round(v, 4) for k, v in lexical_errors.items()},
        },
    }
    return model


def answer_rows(rag: Any, samples: Sequence[Any], say: Any = None) -> list[Row]:
    """One :class:`Row` per question ``rag`` answered (with ``guard.on_unsupported = "pass"``, so
    nothing is withheld and every answer carries its verdict features); abstentions are skipped."""
    from rag_app.answer_match import best_over_truths, contains_truth, token_f1
    from rag_app.prompting import strip_citations

    rows = []
    for i, sample in enumerate(samples, 1):
        answer = rag.ask(sample.question)
        features = answer.grounding.features if answer.grounding is not None else None
        if features and not answer.abstained:
            clean = strip_citations(answer.text)
            truths = list(sample.answers)
            f1 = best_over_truths(token_f1, clean, truths)
            rows.append(Row(dict(features), f1, bool(truths), contains_truth(clean, truths)))
        if say is not None and (i == len(samples) or i % max(1, len(samples) // 10) == 0):
            say(f"  [{i}/{len(samples)}] calibration answers")
    return rows


MIN_CLASS_ROWS = 10
"""An adapter's own verdict is fitted only when its answers hold at least this many right and this
many not-right ones; with fewer, the packaged weights are applied to its own signals."""


def fit_adapter_verdict(
    open_rag: Any,
    settings: Any,
    adapter: Path,
    samples: Sequence[Any],
    say: Any = None,
    rows_out: Path | None = None,
) -> dict[str, Any]:
    """Fit ``adapter``'s own verdict on its answers to ``samples`` and save it in the adapter's
    folder (:data:`rag_app.generation.VERDICT_FILE`), where the answerer finds it.

    The verifier's P(Yes) and the token log-probabilities are calibrated per model: the packaged
    verdict, fitted on the bare model, does not apply to an adapter, which then gets the lexical
    model only (and withholds right answers it cannot check). ``open_rag(settings, index)`` opens
    the app. While the adapter answers, its folder holds the packaged verdict marked provisional
    (so the answerer computes the verifier and log-probabilities); a fit that cannot be made
    removes it again. With fewer than :data:`MIN_CLASS_ROWS` right or not-right answers the
    packaged weights stay, marked as applying to this adapter. ``rows_out``: the answers' features
    as JSONL (to refit or inspect). Returns what was fitted (or why not)."""
    from rag_app.generation import VERDICT_FILE
    from rag_app.guard.verdict import DEFAULT_MODEL, VerdictModel

    path = adapter / VERDICT_FILE
    run_settings = settings.model_copy(deep=True)
    run_settings.generator.adapter = str(adapter)
    run_settings.guard.on_unsupported = "pass"
    run_settings.guard.verdict_path = None
    rag = open_rag(run_settings)
    try:
        ids = {"generator": rag.generator.model_id, "adapter": rag.generator.adapter_id}
        provisional = VerdictModel.load(DEFAULT_MODEL)
        provisional.info = {**ids, "provisional": True}
        provisional.save(path)
        rows = answer_rows(rag, samples, say)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        rag.close()
    right = sum(r.right for r in rows)
    if rows_out is not None:
        with rows_out.open("w", encoding="utf-8") as out:
            for r in rows:
                out.write(json.dumps({"features": r.features, "f1": r.f1, "right": r.right}) + "\n")
    if not rows:
        path.unlink(missing_ok=True)
        return {"fitted": False, "reason": "the adapter answered none of the questions", "rows": 0}
    if min(right, len(rows) - right) < MIN_CLASS_ROWS:
        # too few of one kind to fit seven weights (14 answers, 3 right, fitted AUROC 1.0 and withheld
        # nearly every right answer on held-out questions): the packaged weights, on its own signals
        provisional.info = {
            **ids, "weights": "packaged (too few answers to fit)", "rows": len(rows), "right": right,
            "fitted_on": f"{len(samples)} training-pool questions",
        }  # fmt: skip
        provisional.save(path)
        return {"fitted": False, "reason": f"{right} of {len(rows)} answers right: kept the packaged "
                f"weights (a fit needs {MIN_CLASS_ROWS} right and {MIN_CLASS_ROWS} not)",
                "path": str(path), "rows": len(rows), "right": right}  # fmt: skip
    model = fit_verdict(rows, {**ids, "fitted_on": f"{len(samples)} training-pool questions"})
    model.save(path)
    return {"fitted": True, "path": str(path), "threshold": model.threshold, **model.info}
