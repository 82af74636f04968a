"""All the probes a run asks for (:func:`run_probes`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.perturb import check_choice
from eval.probes.bias import bias_probe
from eval.probes.common import DEFAULT_N, PROBE_KINDS
from eval.probes.injection import injection_probe
from eval.probes.robustness import robustness_probe
from eval.types import EvalSample

if TYPE_CHECKING:
    from rag_app.rag import RAG

log = logging.getLogger(__name__)


def run_probes(
    rag: RAG,
    samples: Sequence[EvalSample],
    *,
    kinds: Sequence[str] = PROBE_KINDS,
    n: int = DEFAULT_N,
    seed: int = 0,
    work_dir: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the named probes: ``{kind: report}``, each report with ``summary`` and ``cases``.

    At most :func:`probe_calls` ``(kinds, n)`` generator calls; index copies go under ``work_dir``
    (a temporary folder by default) and are removed afterwards.
    """
    check_choice(kinds, PROBE_KINDS, "kind")
    reports: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(kinds):
        log.info("probe %s on %d questions", kind, min(n, len(samples)))
        if kind == "bias":
            reports[kind] = bias_probe(rag, samples, n=n, seed=seed)
        elif kind == "robustness":
            reports[kind] = robustness_probe(rag, samples, n=n, seed=seed, work_dir=work_dir)
        else:
            reports[kind] = injection_probe(rag, samples, n=n, seed=seed, work_dir=work_dir)
    return reports
