"""Train the guard's tree model: ``rag-app guard train --data DIR --out rag_app/guard/guard-model.json``.

Recipe, top to bottom:

1. read HaluEval summarization and dialogue and the SciFact claims (:mod:`finetune.guard.data`),
   split each by group id (first 80% learn, last 20% report);
2. turn every answer into its model input, the min/mean/max of its sentence features
   (:meth:`Guard.answer_rows`, one embedding call per batch), cached under the cache folder by a
   hash of the data, the feature names and the feature code, so a rerun skips this step;
3. fit scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` on the learning
   rows, convert its trees to :class:`~rag_app.guard.model.TreeModel` arrays and check that the
   numpy scoring reproduces scikit-learn's;
4. measure the guard and the two trivial baselines (answer length, share of unseen words) on the
   held-out rows of every task, HaluEval QA included as a sanity check (it is never learned from:
   answer length alone scores 0.94 there), and store the metrics in the model file.

scikit-learn is needed only here (the ``train`` extra); scoring, in the runtime package
:mod:`rag_app.guard`, needs numpy alone.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finetune.guard.data import READERS, Example, split
from finetune.guard.evaluate import baseline, baseline_values, metrics
from rag_app.embeddings.base import Embedder
from rag_app.errors import RagAppError
from rag_app.guard import features as _features_module
from rag_app.guard.features import FEATURES
from rag_app.guard.guard import Guard
from rag_app.guard.model import AGGREGATES, TreeModel, aggregate

LEARN_TASKS = ("sum", "dialogue", "scifact")
"""Tasks whose first 80% the model learns from."""
REPORT_TASKS = ("dialogue", "sum", "scifact", "qa")
"""Tasks measured on their held-out 20% (QA is a sanity check only)."""
TARGET_TASKS = ("sum", "dialogue")
"""The tasks whose mean held-out accuracy is the guard's headline figure."""
BATCH = 256
"""Answers featurized per embedding call."""
PARAMS: dict[str, Any] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "max_depth": 5,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
"""HistGradientBoostingClassifier settings (no early stopping: its random validation split would
put the two answers of a pair on both sides)."""
_RUNTIME = Path(_features_module.__file__).parent
_CODE = (_RUNTIME / "features.py", _RUNTIME / "text.py", Path(__file__).with_name("data.py"))
"""Modules whose source is part of the feature-cache key (the runtime's features, these readers)."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sklearn_hint() -> RagAppError:
    return RagAppError("training the guard needs scikit-learn: pip install 'rag-app[train]'")


def train_guard(
    data_dir: Path,
    out: Path,
    embedder: Embedder,
    *,
    seed: int = 0,
    cache_dir: Path | None = None,
    limit: int | None = None,
    tasks: Sequence[str] = LEARN_TASKS,
    progress: Callable[[str], None] | None = _stderr,
) -> dict[str, Any]:
    """Learn the guard from ``data_dir``, write it to ``out`` and return held-out metrics per task.

    ``cache_dir`` holds the feature cache (default: the settings' cache folder). ``limit`` keeps
    only the first ``limit`` groups of each task (for quick tests; metrics are then rough).
    ``tasks`` are those learned from; every task of :data:`REPORT_TASKS` is measured.
    """
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise _sklearn_hint() from None
    if cache_dir is None:
        from rag_app.settings import default_cache_dir

        cache_dir = default_cache_dir()
    unknown = sorted(set(tasks) - set(LEARN_TASKS))
    if unknown:
        raise RagAppError(f"cannot learn from {unknown}: choose among {list(LEARN_TASKS)}")
    say = progress or (lambda _: None)
    started = time.perf_counter()
    guard = Guard(embedder)
    splits: dict[str, tuple[list[Example], list[Example]]] = {}
    inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for task in REPORT_TASKS:
        examples = _limited(READERS[task](Path(data_dir)), limit)
        learn, report = split(examples)
        splits[task] = (learn, report)
        # a task only measured (QA) is featurized on its held-out rows alone
        inputs[task] = task_inputs(guard, task, learn + report if task in tasks else report, cache_dir, say)

    x_parts, y_parts, w_parts = [], [], []
    for task in tasks:
        learn = splits[task][0]
        x, present = inputs[task]
        x, present = x[: len(learn)], present[: len(learn)]
        y = np.array([e.supported for e in learn])[present]
        x_parts.append(x[present])
        y_parts.append(y)
        w_parts.append(np.full(len(y), 1.0 / max(1, len(y))))  # each task weighs the same
    x_train, y_train = np.concatenate(x_parts), np.concatenate(y_parts)
    weights = np.concatenate(w_parts)
    weights *= len(weights) / weights.sum()
    say(f"fitting on {len(y_train)} answers of {', '.join(tasks)}")
    classifier = HistGradientBoostingClassifier(random_state=seed, **PARAMS)
    with threadpool_limits(1):  # OpenMP threads spin on a busy machine; one thread is fast enough here
        classifier.fit(x_train, y_train, sample_weight=weights)
    model = from_sklearn(classifier)
    drift = float(np.abs(model.log_odds(x_train) - classifier.decision_function(x_train)).max())
    if drift > 1e-4:
        raise RagAppError(
            f"tree conversion changed the scores by up to {drift:.2g}; scikit-learn's format moved?"
        )

    results: dict[str, Any] = {}
    for task in REPORT_TASKS:
        learn, report = splits[task]
        x, present = inputs[task]
        x, present = x[len(x) - len(report) :], present[len(x) - len(report) :]
        score = np.ones(len(report))
        if present.any():
            score[present] = model.predict(x[present])
        results[task] = {
            "guard": metrics([e.supported for e in report], score),
            "length": baseline(learn, report, "length"),
            "unseen": baseline(learn, report, "unseen"),
            "length_check": length_check(report, score),
            "learned": task in tasks,
            "learn_rows": len(learn),
        }
    target = [results[t]["guard"]["accuracy"] for t in TARGET_TASKS if t in results]
    summary = {
        "mean_accuracy_sum_dialogue": round(float(np.mean(target)), 4),
        "tasks": results,
    }
    model.info = {
        "trained_on": list(tasks),
        "seed": seed,
        "limit": limit,
        "params": PARAMS,
        "max_depth": _depth(classifier),
        "trees": int(model.feature.shape[0]),
        "embedder": embedder.model_id,
        "sklearn": _sklearn_version(),
        "python": platform.python_version(),
        "held_out": dict(summary),
        "command": f"rag-app guard train --data {data_dir} --out {out} --seed {seed}",
    }
    model.save(Path(out))
    summary["model"] = str(out)
    summary["model_bytes"] = Path(out).stat().st_size
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def _limited(examples: list[Example], limit: int | None) -> list[Example]:
    if limit is None:
        return examples
    keep = set(sorted({e.group for e in examples})[:limit])
    return [e for e in examples if e.group in keep]


def task_inputs(
    guard: Guard, task: str, examples: Sequence[Example], cache_dir: Path, say: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of ``examples`` (rows, 3 * features) and which have a claim sentence, cached."""
    key = _cache_key(task, examples, guard.embedder.model_id)
    path = Path(cache_dir) / "guard-features" / f"{task}-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["x"], cached["present"]
    say(f"featurizing {len(examples)} {task} answers (cached in {path.parent})")
    t0 = time.perf_counter()
    width = len(FEATURES) * len(AGGREGATES)
    x = np.zeros((len(examples), width), dtype=np.float32)
    present = np.zeros(len(examples), dtype=bool)
    for first in range(0, len(examples), BATCH):
        batch = examples[first : first + BATCH]
        rows = guard.answer_rows(
            [e.claim for e in batch], [e.passages for e in batch], [e.context for e in batch]
        )
        for i, r in enumerate(rows):
            if len(r):
                x[first + i] = aggregate(r)
                present[first + i] = True
    say(f"  {len(examples)} {task} answers in {time.perf_counter() - t0:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, x=x, present=present)
    tmp.replace(path)
    return x, present


def _code_digest() -> str:
    """Hash of the feature code's syntax tree (formatting and comments do not count)."""
    import ast

    digest = hashlib.sha256()
    for path in _CODE:
        digest.update(ast.dump(ast.parse(path.read_text())).encode())
    return digest.hexdigest()


_CODE_DIGEST = _code_digest()
"""Taken at import, when the feature code this process runs was read."""


def _cache_key(task: str, examples: Sequence[Example], embedder_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([task, list(FEATURES), list(AGGREGATES), embedder_id, _CODE_DIGEST]).encode())
    for e in examples:
        digest.update(json.dumps([e.claim, e.passages, e.context, e.supported, e.group]).encode())
    return digest.hexdigest()[:16]


def from_sklearn(classifier: Any) -> TreeModel:
    """Convert a fitted binary ``HistGradientBoostingClassifier`` to :class:`TreeModel` arrays.

    Its leaf values already include the learning rate; a row goes left where
    ``x[feature] <= threshold`` (no missing values occur in the features).
    """
    if len(classifier.classes_) != 2 or list(classifier.classes_) != [0, 1]:
        raise RagAppError(f"expected a binary classifier of 0/1 labels, got classes {classifier.classes_}")
    trees = [step[0].nodes for step in classifier._predictors]
    width = max(len(nodes) for nodes in trees)
    shape = (len(trees), width)
    feature = np.full(shape, -1, dtype=np.int64)
    threshold = np.zeros(shape)
    left = np.zeros(shape, dtype=np.int64)
    right = np.zeros(shape, dtype=np.int64)
    value = np.zeros(shape)
    for t, nodes in enumerate(trees):
        n = len(nodes)
        leaf = nodes["is_leaf"].astype(bool)
        if nodes["is_categorical"].any():
            raise RagAppError("categorical splits cannot be converted")
        feature[t, :n] = np.where(leaf, -1, nodes["feature_idx"])
        threshold[t, :n] = np.where(leaf, 0.0, nodes["num_threshold"])
        left[t, :n] = np.where(leaf, 0, nodes["left"])
        right[t, :n] = np.where(leaf, 0, nodes["right"])
        value[t, :n] = np.where(leaf, nodes["value"], 0.0)
    bias = float(np.ravel(classifier._baseline_prediction)[0])
    return TreeModel(feature, threshold, left, right, value, bias, info={"max_depth": _depth(classifier)})


def _depth(classifier: Any) -> int:
    return int(max(int(step[0].nodes["depth"].max()) for step in classifier._predictors))


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def length_check(examples: Sequence[Example], score: np.ndarray) -> dict[str, Any]:
    """Does the guard lean on answer length? Pair accuracy split by which answer is longer.

    For each held-out pair (one supported, one hallucinated answer) the guard is right when it
    scores the supported one higher. A guard that learned "longer means hallucinated" would be
    right far more often where the hallucinated answer is the longer one.
    """
    lengths = baseline_values(examples, "length")
    pairs: dict[int, dict[int, int]] = {}
    for i, e in enumerate(examples):
        pairs.setdefault(e.group, {})[e.supported] = i
    out: dict[str, Any] = {}
    for name, test in (
        ("hallucinated_longer", lambda good, bad: lengths[bad] > lengths[good]),
        ("hallucinated_shorter", lambda good, bad: lengths[bad] < lengths[good]),
        ("same_length", lambda good, bad: lengths[bad] == lengths[good]),
    ):
        chosen = [(p[1], p[0]) for p in pairs.values() if 0 in p and 1 in p and test(p[1], p[0])]
        right = [float(score[good] > score[bad]) for good, bad in chosen]
        out[name] = {
            "pairs": len(chosen),
            "pair_accuracy": round(float(np.mean(right)), 4) if right else None,
        }
    return out
