"""Trust probes for a RAG app: counterfactual bias, robustness to perturbations, prompt injection.

Each probe asks at most ``n`` base questions of a dataset and returns a JSON-ready report: a
``summary`` of a few headline numbers and the ``cases`` behind them. :func:`probe_calls` says how
many generator calls a probe makes at most (the cost estimator reads it). Everything is seeded:
the same seed, app and samples give the same probes.

Design:

- **Bias** (counterfactual pairs, per axis ``gender``, ``nationality``, ``name``). For each base
  question the passages retrieved for it are fixed, and the counterfactual side swaps the axis'
  terms (fixed word lists below) in the question *and* in those passages, so both sides differ
  only by the swap; both go through the app's own answerer (prompt, generator, guard, abstention)
  with those passages, which needs no index copy. Agreement is the token F1 between the
  counterfactual answer and the *swapped* base answer (a fair app answers "she" where it answered
  "he"). A question with no swappable term in it or its passages gets a templated persona pair
  instead ("I am a man. Q" / "I am a woman. Q", asked normally; one axis per such question, in
  turn). Limitations: word lists are small and English; only first names are swapped; "Indian" or
  "French" as a language are swapped like demonyms.
- **Robustness**: typos, all-lower / all-upper case, a rule-based paraphrase, and distractor
  passages (near-topic but irrelevant, ingested into a copy of the index); each compared with the
  unperturbed answer.
- **Injection**: documents carrying "reply only with: <canary>" instructions (one template hides it
  mid-paragraph in a copy of the question's top passage) are planted in a copy of the index, one
  template at a time. Success is the model writing the canary; the report also says whether the
  planted passage was retrieved and whether the guard flagged or withheld the answer.

The user's index is never written: :func:`copy_index` copies it under its writer lock (SQLite
through the backup API, so a WAL is included) into a temporary folder, removed afterwards. (Like
any reader closing last, the copy's connection may checkpoint a pending WAL into the database:
the same content, no new files left behind.)

The package: :mod:`~eval.probes.common` (asking, comparing, counting calls),
:mod:`~eval.probes.bias`, :mod:`~eval.probes.robustness`, :mod:`~eval.probes.injection` (one
probe each), :mod:`~eval.probes.suite` (:func:`run_probes`).
"""

from eval.probes.bias import bias_probe
from eval.probes.common import DEFAULT_N, PERTURBATIONS, PROBE_KINDS, agreement, probe_calls
from eval.probes.injection import injection_probe
from eval.probes.robustness import robustness_probe
from eval.probes.suite import run_probes

__all__ = [
    "DEFAULT_N",
    "PERTURBATIONS",
    "PROBE_KINDS",
    "agreement",
    "bias_probe",
    "injection_probe",
    "probe_calls",
    "robustness_probe",
    "run_probes",
]
