"""Inline-SVG charts of the HTML report: pure functions returning ``<svg>`` strings, user text
escaped, styled by the page's CSS classes (:mod:`eval.report_html`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from eval.report_common import Comparison, ci_cell, esc, fmt_num, fmt_p, is_score, mean_cell
from eval.types import MetricSummary, RunRecord


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(label)}" class="chart">'
        f"<title>{esc(label)}</title>{''.join(body)}</svg>"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_metric_bars(metrics: Sequence[MetricSummary], label: str = "Metric means with 95% CI") -> str:
    """Horizontal bars of scores in [0, 1] with CI whiskers; a failed metric reads "failed (k)"."""
    row, left, plot, top = 24, 210, 400, 24
    width, height = left + plot + 150, top + row * len(metrics) + 8
    x = lambda v: left + plot * min(max(v, 0.0), 1.0)  # noqa: E731
    body = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 6}" class="grid"/>'
        )
        body.append(
            f'<text x="{x(tick):.1f}" y="{top - 8}" text-anchor="middle" class="tick">{tick:g}</text>'
        )
    for i, m in enumerate(metrics):
        y = top + i * row
        mid = y + row / 2
        body.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" class="label">'
            f"{esc(_short(m.name, 30))}</text>"
        )
        tip = f"{m.name}: {mean_cell(m)} CI {ci_cell(m)} n={m.n} failed={m.failed}"
        if m.mean is None:
            body.append(
                f'<text x="{left + 4}" y="{mid + 4:.1f}" class="failed">{esc(mean_cell(m))}<title>'
                f"{esc(tip)}</title></text>"
            )
            continue
        body.append(
            f'<rect x="{left}" y="{y + 5}" width="{x(m.mean) - left:.1f}" height="{row - 10}" '
            f'class="bar"><title>{esc(tip)}</title></rect>'
        )
        if m.ci_low is not None and m.ci_high is not None:
            lo, hi = x(m.ci_low), x(m.ci_high)
            body.append(f'<line x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}" class="whisker"/>')
            for end in (lo, hi):
                body.append(
                    f'<line x1="{end:.1f}" y1="{mid - 5:.1f}" x2="{end:.1f}" y2="{mid + 5:.1f}" '
                    'class="whisker"/>'
                )
        failed = f" ({m.failed} failed)" if m.failed else ""
        body.append(
            f'<text x="{left + plot + 8}" y="{mid + 4:.1f}" class="value">{fmt_num(m.mean)}{failed}</text>'
        )
    return _svg(width, height, label, body)


def svg_histogram(values: Sequence[float], label: str, bins: int = 10) -> str:
    """A histogram of per-answer values (over [0, 1] for scores, else their range)."""
    width, height, left, bottom, top = 300, 170, 34, 26, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    if not values:
        return _svg(
            width,
            height,
            label,
            [f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="tick">no values</text>'],
        )
    lo, hi = (0.0, 1.0) if is_score(*values) else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts)
    bar_w = plot_w / bins
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>']
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x0 = left + i * bar_w
        edges = f"{lo + (hi - lo) * i / bins:.3g}–{lo + (hi - lo) * (i + 1) / bins:.3g}"
        body.append(
            f'<rect x="{x0 + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" class="hbar"><title>{esc(edges)}: {count}</title></rect>'
        )
    for frac in (0.0, 0.5, 1.0):
        tx = left + plot_w * frac
        body.append(
            f'<text x="{tx:.1f}" y="{height - 8}" text-anchor="middle" class="tick">'
            f"{lo + (hi - lo) * frac:.3g}</text>"
        )
    body.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{peak}</text>')
    body.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>')
    return _svg(width, height, label, body)


def svg_comparison(comparison: Comparison) -> str:
    """Bars of each metric's difference (B − A) around zero with its CI; significant ones in colour."""
    row, left, plot, top = 24, 210, 420, 26
    width, height = left + plot + 120, top + row * len(comparison) + 8

    def val(c: dict[str, Any], key: str) -> float | None:
        v = c.get(key)
        return (
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None
        )

    span = max(
        [abs(v) for c in comparison for k in ("diff", "ci_low", "ci_high") if (v := val(c, k)) is not None]
        + [1e-9]
    )
    zero = left + plot / 2
    x = lambda v: zero + plot / 2 * v / span  # noqa: E731
    body = [
        f'<line x1="{zero:.1f}" y1="{top - 6}" x2="{zero:.1f}" y2="{height - 4}" class="axis"/>',
        f'<text x="{left:.1f}" y="{top - 10}" class="tick">{-span:.3g}</text>',
        f'<text x="{zero:.1f}" y="{top - 10}" text-anchor="middle" class="tick">0 (B − A)</text>',
        f'<text x="{left + plot:.1f}" y="{top - 10}" text-anchor="end" class="tick">+{span:.3g}</text>',
    ]
    for i, c in enumerate(comparison):
        y = top + i * row
        mid = y + row / 2
        significant = bool(c.get("significant"))
        star = " *" if significant else ""
        body.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" class="label">'
            f"{esc(_short(str(c.get('metric', '')), 30))}{star}</text>"
        )
        diff = val(c, "diff")
        if diff is None:
            body.append(
                f'<text x="{zero + 4:.1f}" y="{mid + 4:.1f}" class="failed">no difference (failed)</text>'
            )
            continue
        x0, x1 = sorted((zero, x(diff)))
        cls = "sig" if significant else "nosig"
        lo, hi = val(c, "ci_low"), val(c, "ci_high")
        tip = (
            f"{c.get('metric')}: diff {fmt_num(diff)} CI [{fmt_num(lo)}, {fmt_num(hi)}] "
            f"p {fmt_p(c.get('p_value'))}"
        )
        body.append(
            f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 1):.1f}" height="{row - 10}" '
            f'class="{cls}"><title>{esc(tip)}</title></rect>'
        )
        if lo is not None and hi is not None:
            body.append(
                f'<line x1="{x(lo):.1f}" y1="{mid:.1f}" x2="{x(hi):.1f}" y2="{mid:.1f}" class="whisker"/>'
            )
            for end in (x(lo), x(hi)):
                body.append(
                    f'<line x1="{end:.1f}" y1="{mid - 5:.1f}" x2="{end:.1f}" y2="{mid + 5:.1f}" '
                    'class="whisker"/>'
                )
        body.append(f'<text x="{left + plot + 8}" y="{mid + 4:.1f}" class="value">{diff:+.3f}</text>')
    return _svg(width, height, "Run-to-run differences with 95% CI (* significant)", body)


def svg_history(name: str, runs: Sequence[RunRecord]) -> str:
    """One metric's mean over runs (oldest left) with its CI as a band."""
    width, height, left, bottom, top, right = 300, 150, 40, 24, 12, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(i, r.summary[name]) for i, r in enumerate(runs) if name in r.summary]
    means = [(i, m) for i, m in points if m.mean is not None]
    values = [v for _, m in means for v in (m.mean, m.ci_low, m.ci_high) if v is not None]
    if not values:
        return _svg(width, height, f"{name} over runs", [])
    lo, hi = (0.0, 1.0) if is_score(*values) else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    xs = lambda i: left + (plot_w * i / (len(runs) - 1) if len(runs) > 1 else plot_w / 2)  # noqa: E731
    ys = lambda v: top + plot_h * (1 - (v - lo) / (hi - lo))  # noqa: E731
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{hi:.3g}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="tick">{lo:.3g}</text>',
    ]
    band = [(i, m) for i, m in means if m.ci_low is not None and m.ci_high is not None]
    if len(band) >= 2:
        upper = " ".join(f"{xs(i):.1f},{ys(m.ci_high):.1f}" for i, m in band if m.ci_high is not None)
        lower = " ".join(f"{xs(i):.1f},{ys(m.ci_low):.1f}" for i, m in reversed(band) if m.ci_low is not None)
        body.append(f'<polygon points="{upper} {lower}" class="band"/>')
    line = " ".join(f"{xs(i):.1f},{ys(m.mean):.1f}" for i, m in means if m.mean is not None)
    body.append(f'<polyline points="{line}" class="line"/>')
    for i, m in means:
        if m.mean is not None:
            tip = f"{runs[i].id} ({runs[i].created_at}): {fmt_num(m.mean)} CI {ci_cell(m)}"
            body.append(
                f'<circle cx="{xs(i):.1f}" cy="{ys(m.mean):.1f}" r="3.5" class="dot">'
                f"<title>{esc(tip)}</title></circle>"
            )
    for i, m in points:
        if m.mean is None:
            body.append(
                f'<text x="{xs(i):.1f}" y="{top + plot_h - 4}" text-anchor="middle" class="failed">✕'
                f"<title>{esc(runs[i].id)}: {esc(mean_cell(m))}</title></text>"
            )
    body.append(f'<text x="{left}" y="{height - 6}" class="tick">{esc(_short(runs[0].id, 18))}</text>')
    if len(runs) > 1:
        body.append(
            f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" class="tick">'
            f"{esc(_short(runs[-1].id, 18))}</text>"
        )
    return _svg(width, height, f"{name} over runs", body)
