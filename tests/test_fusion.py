from __future__ import annotations

import numpy as np
import pytest

from rag_app.retrieval import mmr, reciprocal_rank_fusion, weighted_fusion


def test_rrf_matches_hand_computed_scores() -> None:
    fused = reciprocal_rank_fusion([[(1, 9.0), (2, 5.0)], [(2, 0.9), (3, 0.1)]], k=60)
    assert fused[1] == pytest.approx(1 / 61)
    assert fused[2] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[3] == pytest.approx(1 / 62)


def test_weighted_fusion_normalises_each_list() -> None:
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]
    sparse = [(3, 30.0), (4, 10.0)]
    fused = weighted_fusion([dense, sparse], [0.5, 0.5])
    assert fused[1] == pytest.approx(0.5)
    assert fused[2] == pytest.approx(0.25)
    assert fused[3] == pytest.approx(0.5)  # 0 from dense, 1 from sparse
    assert fused[4] == pytest.approx(0.0)
    only_dense = weighted_fusion([dense, sparse], [1.0, 0.0])
    assert set(only_dense) == {1, 2, 3}


def test_mmr_prefers_novel_candidates() -> None:
    a = np.array([1.0, 0.0])
    a_copy = np.array([0.999, 0.0447])
    b = np.array([0.0, 1.0])
    candidates = np.stack([a, a_copy, b]).astype(np.float32)
    relevance = np.array([1.0, 0.99, 0.6])
    assert mmr(a, candidates, relevance, k=2, lam=1.0) == [0, 1]
    assert mmr(a, candidates, relevance, k=2, lam=0.5) == [0, 2]
    assert mmr(a, candidates[:0], relevance[:0], k=2, lam=0.5) == []
