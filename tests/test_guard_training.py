"""Guard training lives in ``finetune.guard``: its CLI needs ``--data``, its AUROC is scikit-learn's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rag_app.cli import cli


def test_guard_train_requires_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["guard", "train", "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2
    assert "Missing option '--data'" in result.output
    assert not (tmp_path / "m.json").exists()
    shown = CliRunner().invoke(cli, ["guard", "train", "--help"]).output
    assert "--data" in shown and "../shared/data" not in shown.split("Example")[0]


def test_guard_is_listed_and_lazy() -> None:
    from rag_app.cli import _Group

    assert _Group.LAZY["guard"] == ("finetune.guard.cli", "guard_group")
    assert "train" in CliRunner().invoke(cli, ["guard", "--help"]).output


def test_auroc_matches_the_rank_definition() -> None:
    pytest.importorskip("sklearn", reason="the guard metrics need the train extra (scikit-learn)")
    from finetune.guard.evaluate import auroc, metrics

    y = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    risk = np.array([0.9, 0.1, 0.5, 0.5, 0.2, 0.3])
    # pairs (positive, negative) ranked right, ties counting half: 6.5 of 9
    pairs = [(p, n) for p in risk[y] for n in risk[~y]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auroc(y, risk) == pytest.approx(expected) == pytest.approx(6.5 / 9)
    assert math.isnan(auroc(np.ones(3, dtype=bool), np.arange(3.0)))
    assert metrics([0, 1, 0, 1], np.array([0.1, 0.9, 0.2, 0.8]))["auroc"] == 1.0
