"""Confidence intervals and run-to-run significance, by resampling questions (numpy only).

* :func:`summarize`: a metric's mean over the values that exist, the count of failures, and a
  95% percentile-bootstrap interval. Questions are resampled, and with replicates each resampled
  question contributes one of its replicates drawn at random (a two-stage bootstrap), so the
  interval covers both "which questions" and "which sample of the generator".
* :func:`compare_runs`: for each metric both runs have, the paired difference over their common
  questions, its bootstrap interval and a sign-flip permutation p-value; p-values are adjusted
  across metrics with Holm's method, and a difference is significant when the adjusted p < alpha.

Seeded: the same inputs give the same intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from eval.types import MetricSummary, SampleResult

ALPHA = 0.05


def metric_table(results: Iterable[SampleResult], metric: str) -> tuple[dict[str, list[float]], int]:
    """``{sample id: [value per replicate that exists]}`` and the number of failed values."""
    table: dict[str, list[float]] = defaultdict(list)
    failed = 0
    for result in results:
        if metric not in result.metrics:
            continue
        value = result.metrics[metric]
        if value is None:
            failed += 1
        else:
            table[result.sample_id].append(float(value))
    return dict(table), failed


def _matrix(table: dict[str, list[float]], ids: Sequence[str]) -> np.ndarray:
    """Questions x replicates, NaN where a replicate has no value."""
    width = max((len(table[i]) for i in ids), default=1)
    out = np.full((len(ids), width), np.nan)
    for row, sample_id in enumerate(ids):
        values = table[sample_id]
        out[row, : len(values)] = values
    return out


def _two_stage_means(matrix: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Bootstrap means: resample rows, then one existing replicate per drawn row."""
    n, width = matrix.shape
    rows = rng.integers(0, n, size=(resamples, n))
    if width == 1:
        return matrix[rows, 0].mean(axis=1)
    counts = (~np.isnan(matrix)).sum(axis=1)
    picks = (rng.random(size=(resamples, n)) * counts[rows]).astype(int)
    packed = np.sort(np.where(np.isnan(matrix), np.inf, matrix), axis=1)  # existing values first
    values = packed[rows, picks]
    return values.mean(axis=1)


def summarize(
    results: Sequence[SampleResult], metric: str, *, resamples: int = 1000, seed: int = 0
) -> MetricSummary:
    """Mean, count, failures and 95% bootstrap interval of ``metric`` over ``results``."""
    table, failed = metric_table(results, metric)
    values = [v for vs in table.values() for v in vs]
    if not values:
        return MetricSummary(metric, None, 0, failed)
    ids = sorted(table)
    matrix = _matrix(table, ids)
    per_question = np.nanmean(matrix, axis=1)
    mean = float(per_question.mean())
    if len(ids) < 2:
        return MetricSummary(metric, mean, len(values), failed)
    means = _two_stage_means(matrix, np.random.default_rng(seed), resamples)
    low, high = np.percentile(means, [2.5, 97.5])
    return MetricSummary(metric, mean, len(values), failed, float(low), float(high))


def metric_names(results: Iterable[SampleResult]) -> list[str]:
    """Every metric any result has, sorted."""
    return sorted({name for r in results for name in r.metrics})


def summarize_all(
    results: Sequence[SampleResult], *, resamples: int = 1000, seed: int = 0
) -> dict[str, MetricSummary]:
    return {m: summarize(results, m, resamples=resamples, seed=seed) for m in metric_names(results)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_runs(
    a: Sequence[SampleResult],
    b: Sequence[SampleResult],
    *,
    resamples: int = 2000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Paired differences (B - A) of every shared metric over the questions both runs scored.

    Each row: ``metric``, ``n`` (common questions), ``a``, ``b``, ``diff``, ``ci_low``,
    ``ci_high`` (95% bootstrap of the mean difference), ``p_value`` (two-sided sign-flip
    permutation test), ``p_adjusted`` (Holm, across the metrics) and ``significant``.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for metric in sorted(set(metric_names(a)) & set(metric_names(b))):
        table_a, _ = metric_table(a, metric)
        table_b, _ = metric_table(b, metric)
        common = sorted(set(table_a) & set(table_b))
        if len(common) < 2:
            continue
        x = np.array([np.mean(table_a[i]) for i in common])
        y = np.array([np.mean(table_b[i]) for i in common])
        d = y - x
        observed = float(d.mean())
        boot = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, len(d)))
        flipped = np.abs((signs * d).mean(axis=1))
        p = (int((flipped >= abs(observed) - 1e-12).sum()) + 1) / (resamples + 1) if np.any(d) else 1.0
        low, high = np.percentile(boot, [2.5, 97.5])
        rows.append(
            {
                "metric": metric,
                "n": len(common),
                "a": float(x.mean()),
                "b": float(y.mean()),
                "diff": observed,
                "ci_low": float(low),
                "ci_high": float(high),
                "p_value": p,
            }
        )
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_adjusted"] = adjusted
        row["significant"] = adjusted < alpha
    return rows
