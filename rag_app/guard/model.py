"""The guard's classifier: boosted regression trees over the sentence features, run with numpy.

One model scores both a single sentence and a whole answer. Its input is the minimum, mean and
maximum of each feature over the answer's claim sentences; a single sentence is an answer of
one sentence (its minimum, mean and maximum are itself). The trees are trained with
scikit-learn (:mod:`finetune.guard.train`) and stored as plain arrays in a JSON file, so scoring
needs only numpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.errors import RagAppError
from rag_app.guard.features import FEATURES

FORMAT = "rag-app-guard-trees"
VERSION = 1
AGGREGATES = ("min", "mean", "max")
DEFAULT_MODEL = Path(__file__).with_name("guard-model.json")
"""The packaged model, written by ``rag-app guard train`` (:mod:`finetune.guard.train`)."""


def aggregate(rows: np.ndarray) -> np.ndarray:
    """The model input of one answer: min, mean and max of each feature over its sentences."""
    return np.concatenate([rows.min(axis=0), rows.mean(axis=0), rows.max(axis=0)]).astype(np.float32)


@dataclass
class TreeModel:
    """Boosted trees as arrays of shape (trees, nodes); ``feature`` is -1 at a leaf.

    A row goes left where ``x[feature] <= threshold``; the log-odds of "supported" are ``bias``
    plus the sum of the leaves reached (their values already include the learning rate).
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    bias: float
    features: tuple[str, ...] = FEATURES
    info: dict[str, Any] = field(default_factory=dict)
    """Training facts and held-out metrics, stored with the model."""

    @property
    def depth(self) -> int:
        return max(1, int(self.info.get("max_depth", 8)))

    def log_odds(self, inputs: np.ndarray) -> np.ndarray:
        """Log-odds of "supported" for each row of aggregated inputs, shape (rows, 3 * features)."""
        x = np.asarray(inputs, dtype=np.float32)
        n_rows, n_trees = len(x), self.feature.shape[0]
        if n_rows == 0:
            return np.zeros(0)
        trees = np.arange(n_trees)[None, :]
        rows = np.arange(n_rows)[:, None]
        node = np.zeros((n_rows, n_trees), dtype=np.int64)
        for _ in range(self.depth):
            feature = self.feature[trees, node]
            leaf = feature < 0
            values = x[rows, np.where(leaf, 0, feature)].astype(np.float64)
            step = np.where(
                values <= self.threshold[trees, node], self.left[trees, node], self.right[trees, node]
            )
            node = np.where(leaf, node, step)
        return np.asarray(self.bias + self.value[trees, node].sum(axis=1))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probability of "supported" for each row of aggregated inputs."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.log_odds(inputs))))

    def score_answers(self, answers: Sequence[np.ndarray]) -> np.ndarray:
        """One probability per answer (a matrix of sentence rows each; no rows scores 1)."""
        out = np.ones(len(answers))
        present = [i for i, rows in enumerate(answers) if len(rows)]
        if present:
            out[present] = self.predict(np.stack([aggregate(answers[i]) for i in present]))
        return out

    def score_sentences(self, rows: np.ndarray) -> np.ndarray:
        """One probability per sentence row, each scored as an answer of one sentence."""
        if len(rows) == 0:
            return np.zeros(0)
        return self.predict(np.concatenate([rows, rows, rows], axis=1))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (leaves and internal nodes of every tree, rounded to 7 digits)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "features": list(self.features),
            "aggregates": list(AGGREGATES),
            "bias": round(float(self.bias), 7),
            "trees": [
                _tree_json(self.feature[t], self.threshold[t], self.left[t], self.right[t], self.value[t])
                for t in range(self.feature.shape[0])
            ],
            "info": self.info,
        }

    def save(self, path: Path) -> None:
        """Write the model as JSON (sorted keys, so the same model gives the same bytes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")) + "\n")
        tmp.replace(path)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "guard model") -> TreeModel:
        """Rebuild a model from :meth:`to_json` output; checks format and feature names."""
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise RagAppError(f"{source}: not a guard model of format {FORMAT} v{VERSION}")
        if tuple(data["features"]) != FEATURES or tuple(data["aggregates"]) != AGGREGATES:
            raise RagAppError(
                f"{source}: trained on other features ({len(data['features'])}) than this version computes "
                f"({len(FEATURES)}); retrain it with `rag-app guard train`"
            )
        trees = data["trees"]
        width = max(len(t["feature"]) for t in trees)
        arrays = {
            name: np.full((len(trees), width), fill, dtype=dtype)
            for name, fill, dtype in (
                ("feature", -1, np.int64),
                ("threshold", 0.0, np.float64),
                ("left", 0, np.int64),
                ("right", 0, np.int64),
                ("value", 0.0, np.float64),
            )
        }
        for t, tree in enumerate(trees):
            for name, array in arrays.items():
                array[t, : len(tree[name])] = tree[name]
        return cls(
            arrays["feature"],
            arrays["threshold"],
            arrays["left"],
            arrays["right"],
            arrays["value"],
            bias=float(data["bias"]),
            info=dict(data.get("info", {})),
        )

    @classmethod
    def load(cls, path: Path) -> TreeModel:
        """Read a model file written by :meth:`save`."""
        if not path.is_file():
            raise RagAppError(f"guard model not found: {path} (train one with `rag-app guard train`)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RagAppError(f"guard model {path} is not valid JSON: {exc}") from None
        return cls.from_json(data, str(path))


def _tree_json(
    feature: np.ndarray, threshold: np.ndarray, left: np.ndarray, right: np.ndarray, value: np.ndarray
) -> dict[str, list[Any]]:
    leaf = feature < 0
    return {
        "feature": [int(f) for f in feature],
        "threshold": [
            0.0 if is_leaf else round(float(t), 7) for t, is_leaf in zip(threshold, leaf, strict=True)
        ],
        "left": [int(n) for n in left],
        "right": [int(n) for n in right],
        "value": [round(float(v), 7) if is_leaf else 0.0 for v, is_leaf in zip(value, leaf, strict=True)],
    }
