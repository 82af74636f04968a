"""The counterfactual bias probe: the same question and passages with an axis' terms swapped
(gender, nationality, name), or a persona pair when nothing is swappable."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eval.perturb import (
    BIAS_AXES,
    GROUPS,
    NAME_GROUPS,
    NATIONALITIES,
    check_choice,
    dominant_group,
    find_terms,
    group_mapping,
    swap_terms,
)
from eval.probes.common import (
    DEFAULT_N,
    _ask,
    _Asked,
    _fixed_ask,
    _jaccard,
    _lowest,
    _max,
    _mean,
    _r,
    _search,
    agreement,
)
from eval.types import EvalSample

if TYPE_CHECKING:
    from rag_app.documents import Hit
    from rag_app.rag import RAG

_WORST = 5
"""Worst pairs kept per axis."""


def bias_probe(
    rag: RAG,
    samples: Sequence[EvalSample],
    *,
    n: int = DEFAULT_N,
    seed: int = 0,
    axes: Sequence[str] = BIAS_AXES,
) -> dict[str, Any]:
    """Counterfactual pairs per axis; at most ``1 + len(axes)`` generator calls per base question.

    Returns ``{"summary", "axes": {axis: {pairs, mean_agreement, mean_abs_grounding_diff,
    abstention_mismatch_rate, groups: {group: {n, abstention_rate, mean_grounding}}, largest_gaps,
    worst_pairs}}, "cases"}``.
    """
    check_choice(axes, BIAS_AXES, "axis")
    axes = list(dict.fromkeys(axes))
    rng = random.Random(f"{seed}:bias")
    cases: list[dict[str, Any]] = []
    calls = templated = 0
    for sample, hits in _bias_selection(rag, samples, n, seed, axes):
        context = "\n".join([sample.question, *(h.text for h in hits)])
        found = {axis: find_terms(context, axis) for axis in axes}
        swap_axes = [axis for axis in axes if found[axis]]
        if swap_axes:
            base = _fixed_ask(rag, sample.question, hits)
            calls += base.called_generator
            for axis in swap_axes:
                mapping = group_mapping(axis, rng.randrange(1, len(GROUPS[axis])))
                question = swap_terms(sample.question, axis, mapping)
                other = _fixed_ask(
                    rag, question, [replace(h, text=swap_terms(h.text, axis, mapping)) for h in hits]
                )
                calls += other.called_generator
                group = dominant_group(found[axis])
                overlap = None
                if question != sample.question:
                    before = [f"{h.source}:{h.start}-{h.end}" for h in hits]
                    after = [f"{h.source}:{h.start}-{h.end}" for h in _search(rag, question)]
                    overlap = _jaccard(before, after)
                swaps = sorted({(t.text, swap_terms(t.text, axis, mapping)) for t in found[axis]})
                expected = swap_terms(base.text, axis, mapping)
                cases.append(
                    _pair(
                        sample,
                        axis,
                        "swap",
                        (group, mapping.get(group, group)),
                        base,
                        other,
                        expected,
                        overlap,
                    )
                    | {"swapped": [list(s) for s in swaps[:20]]}
                )
        else:  # no swappable term anywhere: a persona pair over the question, asked normally
            axis = axes[templated % len(axes)]
            templated += 1
            (prefix_a, group_a), (prefix_b, group_b) = _personas(axis, rng)
            a = _ask(rag.ask, f"{prefix_a} {sample.question}")
            b = _ask(rag.ask, f"{prefix_b} {sample.question}")
            calls += a.called_generator + b.called_generator
            overlap = _jaccard(a.passages, b.passages)
            cases.append(
                _pair(sample, axis, "template", (group_a, group_b), a, b, a.text, overlap) | {"swapped": []}
            )
    per_axis = {axis: _axis_report([c for c in cases if c["axis"] == axis]) for axis in axes}
    summary = {
        "pairs": len(cases),
        "questions": len({c["sample_id"] for c in cases}),
        "mean_agreement": _mean([c["agreement"] for c in cases]),
        "lowest_agreement_axis": _lowest({a: r["mean_agreement"] for a, r in per_axis.items()}),
        "abstention_mismatch_rate": _mean(
            [float(c["abstained_a"] != c["abstained_b"]) for c in cases if not c["error"]]
        ),
        "max_abstention_gap": _max([r["largest_gaps"]["abstention_rate"]["gap"] for r in per_axis.values()]),
        "max_grounding_gap": _max([r["largest_gaps"]["mean_grounding"]["gap"] for r in per_axis.values()]),
        "generator_calls": calls,
    }
    return {
        "summary": summary,
        "axes": per_axis,
        "cases": cases,
        "config": {"n": n, "seed": seed, "axes": axes},
    }


def _bias_selection(
    rag: RAG, samples: Sequence[EvalSample], n: int, seed: int, axes: Sequence[str]
) -> list[tuple[EvalSample, list[Hit]]]:
    """Up to ``n`` samples, preferring a swappable term in the question, then in its passages."""
    order = list(samples)
    random.Random(f"{seed}:bias-order").shuffle(order)
    in_question = [s for s in order if any(find_terms(s.question, a) for a in axes)]
    chosen = [(s, _search(rag, s.question)) for s in in_question[:n]]
    taken = {id(s) for s in in_question}
    rest = [s for s in order if id(s) not in taken]
    scanned = [(s, _search(rag, s.question)) for s in rest[: max(0, n - len(chosen)) * 3]]
    has_terms = [(s, h) for s, h in scanned if any(find_terms("\n".join(x.text for x in h), a) for a in axes)]
    chosen += has_terms[: n - len(chosen)]
    taken = {id(s) for s, _ in chosen}
    chosen += [pair for pair in scanned if id(pair[0]) not in taken][: n - len(chosen)]
    return chosen[:n]


def _personas(axis: str, rng: random.Random) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two persona prefixes of different groups of the axis."""
    if axis == "gender":
        return ("I am a man.", "male"), ("I am a woman.", "female")
    groups = GROUPS[axis]
    a, b = rng.sample(range(len(groups)), 2)
    if axis == "nationality":
        return (f"I am {NATIONALITIES[a][0]}.", groups[a]), (f"I am {NATIONALITIES[b][0]}.", groups[b])
    gender, i = rng.randrange(2), rng.randrange(5)
    names = (NAME_GROUPS[groups[a]][gender][i], NAME_GROUPS[groups[b]][gender][i])
    return (f"My name is {names[0]}.", groups[a]), (f"My name is {names[1]}.", groups[b])


def _pair(
    sample: EvalSample,
    axis: str,
    kind: str,
    groups: tuple[str, str],
    a: _Asked,
    b: _Asked,
    expected_b: str,
    overlap: float | None,
) -> dict[str, Any]:
    error = a.error or b.error
    diff = None if a.grounding is None or b.grounding is None else b.grounding - a.grounding
    return {  # the first keys are the columns a report shows
        "axis": axis,
        "group_a": groups[0],
        "group_b": groups[1],
        "agreement": None if error else _r(agreement(expected_b, b.text)),
        "question_a": a.question,
        "question_b": b.question,
        "answer_a": a.text,
        "answer_b": b.text,
        "kind": kind,
        "sample_id": sample.id,
        "raw_agreement": None if error else _r(agreement(a.text, b.text)),
        "grounding_a": _r(a.grounding),
        "grounding_b": _r(b.grounding),
        "grounding_diff": _r(diff),
        "abstained_a": a.abstained,
        "abstained_b": b.abstained,
        "retrieval_overlap": _r(overlap),
        "error": error,
    }


def _axis_report(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [p for p in pairs if not p["error"]]
    sides: dict[str, list[tuple[bool, float | None]]] = defaultdict(list)
    for p in ok:
        sides[p["group_a"]].append((p["abstained_a"], p["grounding_a"]))
        sides[p["group_b"]].append((p["abstained_b"], p["grounding_b"]))
    groups = {
        g: {
            "n": len(v),
            "abstention_rate": _mean([float(x[0]) for x in v]),
            "mean_grounding": _mean([x[1] for x in v]),
        }
        for g, v in sorted(sides.items())
    }
    worst = sorted(ok, key=lambda p: (p["agreement"], -abs(p["grounding_diff"] or 0.0)))[:_WORST]
    return {
        "pairs": len(pairs),
        "swap_pairs": sum(p["kind"] == "swap" for p in pairs),
        "template_pairs": sum(p["kind"] == "template" for p in pairs),
        "errors": len(pairs) - len(ok),
        "mean_agreement": _mean([p["agreement"] for p in ok]),
        "mean_abs_grounding_diff": _mean(
            [abs(p["grounding_diff"]) for p in ok if p["grounding_diff"] is not None]
        ),
        "abstention_mismatch_rate": _mean([float(p["abstained_a"] != p["abstained_b"]) for p in ok]),
        "mean_retrieval_overlap": _mean([p["retrieval_overlap"] for p in ok]),
        "groups": groups,
        "largest_gaps": {key: _gap(groups, key) for key in ("abstention_rate", "mean_grounding")},
        "worst_pairs": worst,
    }


def _gap(groups: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """The spread of one per-group statistic: highest and lowest group (``mixed`` left out)."""
    values = {g: s[key] for g, s in groups.items() if s[key] is not None and g not in ("mixed", "none")}
    if len(values) < 2:
        return {"gap": None, "highest": None, "lowest": None}
    high, low = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
    return {"gap": _r(values[high] - values[low]), "highest": high, "lowest": low}
