"""The hallucination guard with the packaged embedder and the shipped model; a quick real training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from finetune.guard.train import train_guard
from rag_app.errors import RagAppError
from rag_app.guard import Guard
from rag_app.guard.features import FEATURES
from rag_app.guard.guard import NOT_SUPPORTED, WRONG_CITATION
from rag_app.guard.model import DEFAULT_MODEL, TreeModel

pytestmark = pytest.mark.slow

EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. "
    "Constructed from 1887 to 1889 as the centerpiece of the 1889 World's Fair, it was initially "
    "criticised by some of France's leading artists. The tower is 330 metres tall."
)
NILE = (
    "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean "
    "Sea. The Nile is among the longest rivers in the world, about 6,650 km long, and its drainage "
    "basin covers eleven countries, including Tanzania, Uganda, Ethiopia, Sudan and Egypt."
)


@pytest.fixture(scope="module")
def guard(embedder) -> Guard:
    g = Guard(embedder)
    g.warm_up()
    return g


def test_supported_sentences_score_above_unsupported(guard: Guard) -> None:
    supported = "The Eiffel Tower was built from 1887 to 1889 for the World's Fair [1]."
    invented = "The Eiffel Tower was designed by Leonardo da Vinci and is made of chocolate [1]."
    good, bad = (guard.check(text, [EIFFEL]) for text in (supported, invented))
    assert good.score > 0.5 > bad.score
    assert not good.flagged
    assert bad.flagged and bad.flagged[0].reason == NOT_SUPPORTED
    assert good.sentences[0].evidence == [1]
    assert "1887" in good.sentences[0].evidence_text


def test_sentence_citing_the_wrong_source_is_flagged(guard: Guard) -> None:
    answer = "The Nile flows into the Mediterranean Sea [2]. The Eiffel Tower is 330 metres tall [2]."
    grounding = guard.check(answer, [EIFFEL, NILE])
    nile, tower = grounding.sentences
    assert not nile.flagged and nile.citations == [2]
    assert tower.flagged and tower.reason == WRONG_CITATION
    assert tower.evidence[0] == 1  # where the support actually is
    # the same sentence citing the right source passes
    assert not guard.check("The Eiffel Tower is 330 metres tall [1].", [EIFFEL, NILE]).flagged


def test_long_source_is_not_truncated(guard: Guard) -> None:
    data = shared_data("halueval-sum", "summarization_pairs.jsonl")
    articles = [json.loads(line)["document"] for line in data.open(encoding="utf-8")][:40:2]
    filler = " ".join(" ".join(articles).split()[:3000])
    source = f"{filler} {EIFFEL}"
    assert len(source.split()) > 3000
    claim = "The Eiffel Tower is named after the engineer Gustave Eiffel [1]."
    grounding = guard.check(claim, [source])
    sentence = grounding.sentences[0]
    assert not sentence.flagged and sentence.score > 0.5
    assert "Gustave Eiffel" in sentence.evidence_text
    # and without the last paragraph the same claim is not supported
    assert guard.check(claim, [filler]).flagged


def test_non_claims_are_never_flagged(guard: Guard) -> None:
    answer = "Sure! Is that the tower you mean? I could not find this in the documents. Thanks."
    grounding = guard.check(answer, [NILE])
    assert len(grounding.sentences) == 4
    assert not grounding.flagged
    assert all(s.score == 1.0 for s in grounding.sentences)
    assert grounding.score == 1.0


def test_context_grounds_a_dialogue_response(guard: Guard) -> None:
    knowledge = "Iron Man is starring Robert Downey Jr. Robert Downey Jr. starred in Zodiac."
    history = "[Human]: Do you like Iron Man? [Assistant]: Sure do! [Human]: He was also in Zodiac."
    good = guard.score(["Yes, Robert Downey Jr. starred in Zodiac too."], [knowledge], [history])
    bad = guard.score(["Yes, and Tom Hanks directed Zodiac in 1975."], [knowledge], [history])
    assert good[0] > bad[0]


def test_model_json_round_trip(tmp_path: Path) -> None:
    model = TreeModel.load(DEFAULT_MODEL)
    assert model.features == FEATURES
    assert model.info["held_out"]["tasks"]["sum"]["guard"]["accuracy"] > 0.5
    copy = tmp_path / "model.json"
    model.save(copy)
    again = TreeModel.load(copy)
    assert copy.read_bytes() == DEFAULT_MODEL.read_bytes()
    x = np.random.default_rng(0).random((50, 3 * len(FEATURES)), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), again.predict(x), rtol=0, atol=1e-6)
    assert DEFAULT_MODEL.stat().st_size < 5 * 2**20


def test_bad_or_missing_model_file_is_a_clear_error(embedder, tmp_path: Path) -> None:
    missing = Guard(embedder, model_path=tmp_path / "absent.json")
    with pytest.raises(RagAppError, match=r"guard model not found.*rag-app guard train"):
        missing.check("The Nile flows north.", [NILE])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RagAppError, match="not valid JSON"):
        Guard(embedder, model_path=broken).check("The Nile flows north.", [NILE])
    other = json.loads(DEFAULT_MODEL.read_text())
    other["features"] = other["features"][:-1]
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(other))
    with pytest.raises(RagAppError, match="retrain it"):
        TreeModel.load(stale)
    with pytest.raises(ValueError, match=r"guard\.threshold"):
        Guard(embedder, threshold=1.5)


def test_train_guard_on_a_small_subset(embedder, tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="training needs the train extra (scikit-learn)")
    data = shared_data()
    out = tmp_path / "model.json"
    result = train_guard(data, out, embedder, seed=0, cache_dir=tmp_path / "cache", limit=25, progress=None)
    assert set(result["tasks"]) == {"sum", "dialogue", "scifact", "qa"}
    for task in result["tasks"].values():
        assert {"guard", "length", "unseen", "length_check"} <= set(task)
        assert 0.0 <= task["guard"]["accuracy"] <= 1.0
    assert not result["tasks"]["qa"]["learned"]
    assert list((tmp_path / "cache" / "guard-features").glob("sum-*.npz"))
    model = TreeModel.load(out)
    assert model.info["held_out"]["tasks"]["sum"] == result["tasks"]["sum"]
    assert model.info["trained_on"] == ["sum", "dialogue", "scifact"]
    grounding = Guard(embedder, model_path=out).check(
        "The Nile flows into the Mediterranean Sea [1].", [NILE]
    )
    assert 0.0 <= grounding.score <= 1.0
