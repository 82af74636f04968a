from __future__ import annotations

import pytest

from eval.answer_metrics import best_over_truths, exact_match, normalize_answer, token_f1


def test_normalisation_matches_squad() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an Apple, a day") == "apple day"


def test_exact_match_and_f1_hand_computed() -> None:
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert exact_match("Broncos", "Denver Broncos") == 0.0
    # prediction "denver broncos won" vs gold "denver broncos": P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("", "Denver") == 0.0
    assert best_over_truths(token_f1, "Broncos", ["Denver Broncos", "Broncos"]) == 1.0
