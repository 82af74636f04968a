"""eval's building blocks against hand-computed values: retrieval and answer metrics, perplexity,
bootstrap intervals and run comparison, dataset loaders (and their bad input), the run store,
active-learning selection (read back by finetune's data builder) and the cost estimate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eval import answer_metrics as am
from eval import retrieval_metrics as rm
from eval.cost import estimate
from eval.datasets import DatasetError, _question_for, load_beir, load_jsonl, load_named, question_type
from eval.runs import RunNotFoundError, RunStore
from eval.select import select, write_selection
from eval.stats import compare_runs, holm, summarize
from eval.types import EvalSample, FlaggedSentence, Passage, RunRecord, SampleResult, clean_value
from rag_app.settings import Settings


# -- retrieval metrics ------------------------------------------------------------------------------
def test_ndcg_matches_a_hand_computed_beir_case() -> None:
    # ranks: d3 (not relevant), d1 (gain 2), d2 (gain 1)
    # DCG = 2/log2(3) + 1/log2(4) = 1.2618595 + 0.5; IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.6309298
    value = rm.ndcg_at(["d3", "d1", "d2"], {"d1": 2, "d2": 1}, k=10)
    assert value == pytest.approx(1.7618595 / 2.6309298, abs=1e-6)
    assert rm.ndcg_at(["d1", "d2"], {"d1": 2, "d2": 1}) == pytest.approx(1.0)
    assert rm.ndcg_at(["d1", "d2", "d3"], {"d3": 1}, k=2) == 0.0  # cut off at k


def test_recall_mrr_and_hit_rate() -> None:
    rels = {"a": 1, "b": 1, "c": 0}
    ranked = ["x", "b", "c", "a"]
    assert rm.recall_at(ranked, rels, 2) == 0.5  # c has relevance 0: not relevant
    assert rm.recall_at(ranked, rels, 4) == 1.0
    assert rm.reciprocal_rank(ranked, rels) == 0.5
    assert rm.reciprocal_rank(["x", "c"], rels) == 0.0
    assert rm.hit_at(ranked, rels, 1) == 0.0 and rm.hit_at(ranked, rels, 2) == 1.0
    scores = rm.retrieval_scores(ranked, rels)
    assert scores["retrieval.recall@1"] == 0.0 and scores["retrieval.mrr"] == 0.5


def test_passages_map_to_reference_ids_and_texts() -> None:
    assert rm.hit_key("squad/Super_Bowl_50_0", 7, {"Super_Bowl_50_0": 1}) == "Super_Bowl_50_0"
    assert rm.hit_key("scifact:123", 7, {"123": 1}) == "123"
    assert rm.hit_key("/docs/guide.pdf", 7, {"guide.pdf": 1}) == "guide.pdf"
    assert rm.hit_key("/docs/guide.pdf", 7, {"7": 1}) == "7"
    keys, rels = rm.ranked_keys(
        [("a", 1, "x"), ("squad/P1", 2, "y"), ("squad/P1", 3, "z")], {"P1": 1}, []
    )  # the second chunk of P1 does not count twice
    assert keys == ["miss:0", "P1"] and rels == {"P1": 1}
    reference = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    keys, rels = rm.ranked_keys(
        [("f", 1, "Unrelated text about trains."), ("f", 2, "Intro. " + reference + " More text.")],
        {},
        [reference],
    )
    assert keys == ["miss:0", "ref:0"] and rm.recall_at(keys, rels, 2) == 1.0


# -- answer metrics ---------------------------------------------------------------------------------
def test_squad_em_f1_bleu_and_rouge_l() -> None:
    assert am.exact_match("The Denver Broncos!", "denver broncos") == 1.0
    assert am.token_f1("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)  # P 2/3, R 1
    assert am.bleu("the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert am.bleu("completely different words here", ["the cat sat on the mat"]) < 0.1
    assert am.bleu("", ["x"]) == 0.0
    # LCS of "the cat sat on the mat" / "the cat is on the mat" is 5 of 6 tokens each way
    assert am.rouge_l("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx(5 / 6)
    assert am.rouge_l("a b", ["x y", "a b"]) == pytest.approx(1.0)  # best over references


def test_semantic_similarity_ranks_paraphrase_over_unrelated(embedder) -> None:
    values = am.semantic_similarity(
        embedder,
        ["The tower was finished in 1889.", "Bananas are yellow."],
        [["The tower was completed in 1889."], ["The tower was completed in 1889."]],
    )
    assert values[0] > 0.8 > values[1] and all(0.0 <= v <= 1.0 for v in values)


def test_perplexity_equals_exp_of_mean_token_loss() -> None:
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    class CharTokenizer:
        def __call__(self, text: str, return_tensors: str, add_special_tokens: bool) -> dict[str, object]:
            return {"input_ids": torch.tensor([[ord(c) % 64 for c in text]])}

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    text = "the quick brown fox"
    ids = CharTokenizer()(text, "pt", False)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item()
    whole = am.perplexity(model, CharTokenizer(), [text], window=64, stride=32)
    assert whole["tokens"] == len(text) - 1
    assert whole["perplexity"] == pytest.approx(math.exp(nll), rel=1e-4)
    windows = am.perplexity(model, CharTokenizer(), [text], window=8, stride=4)
    assert windows["tokens"] == len(text) - 1  # every token scored exactly once
    assert math.isfinite(windows["perplexity"])


# -- statistics -------------------------------------------------------------------------------------
def _result(sample: str, replicate: int, **metrics: float | None) -> SampleResult:
    return SampleResult(sample, replicate, f"q {sample}", f"a {sample}", metrics=dict(metrics))


def test_failed_values_are_counted_never_averaged() -> None:
    results = [_result("1", 0, f1=1.0), _result("2", 0, f1=0.0), _result("3", 0, f1=None)]
    summary = summarize(results, "f1")
    assert summary.mean == 0.5 and summary.n == 2 and summary.failed == 1
    assert clean_value(float("nan")) is None and clean_value("x") is None and clean_value(0.25) == 0.25
    all_failed = summarize([_result("1", 0, f1=None)], "f1")
    assert all_failed.mean is None and all_failed.failed == 1


def test_bootstrap_interval_covers_the_mean_and_is_reproducible() -> None:
    results = [_result(str(i), r, f1=float((i * 7 + r) % 10) / 10) for i in range(40) for r in range(2)]
    first = summarize(results, "f1", seed=3)
    again = summarize(results, "f1", seed=3)
    assert first == again
    assert first.ci_low is not None and first.ci_high is not None
    assert first.ci_low < first.mean < first.ci_high  # type: ignore[operator]
    assert first.ci_high - first.ci_low < 0.3


def test_compare_finds_a_real_difference_and_not_noise() -> None:
    a = [_result(str(i), 0, f1=0.2 + (i % 5) * 0.01, em=float(i % 2)) for i in range(60)]
    b = [_result(str(i), 0, f1=0.6 + (i % 5) * 0.01, em=float((i + 1) % 2)) for i in range(60)]
    rows = {r["metric"]: r for r in compare_runs(a, b, seed=1)}
    assert rows["f1"]["significant"] and rows["f1"]["diff"] == pytest.approx(0.4)
    assert rows["f1"]["ci_low"] > 0.35
    assert not rows["em"]["significant"]  # same mean, answers merely shuffled
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# -- datasets ---------------------------------------------------------------------------------------
def test_jsonl_dataset_reads_every_reference_shape(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"id": "a", "question": "Who built it?", "answer": "Gustave Eiffel", "context": "Eiffel built it."},
        {"question": "When?", "answers": ["1889", "in 1889"], "context_ids": ["doc1.md"]},
        {"question": "Is it tall?", "relevant": {"doc2.md": 2}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    data = load_jsonl(path)
    assert [s.id for s in data.samples] == ["a", "q2", "q3"]
    assert data.samples[0].answers == ["Gustave Eiffel"] and data.samples[0].contexts == ["Eiffel built it."]
    assert data.samples[1].relevant == {"doc1.md": 1} and data.samples[2].relevant == {"doc2.md": 2}
    assert [s.qtype for s in data.samples] == ["who", "when", "yes/no"]
    assert len(data.fingerprint) == 64 and data.fingerprint == load_jsonl(path).fingerprint


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "ok"}\n{not json\n', "line 2: not valid JSON"),
        ('{"answer": "x"}\n', "line 1: no question"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
        ('{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n', "repeats"),
        ("\n\n", "no questions"),
    ],
)
def test_bad_jsonl_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_jsonl(path)


def test_non_utf8_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"question": "café"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_jsonl(path)
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetError, match="not a BEIR folder"):
        load_beir(tmp_path)


def test_beir_folder_and_named_sets(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "Alpha."}\n{"_id": "d2", "text": "Beta."}\n', encoding="utf-8"
    )
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what is alpha?"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    data = load_beir(tmp_path, name="mini")
    assert [(s.id, s.relevant) for s in data.samples] == [("q1", {"d1": 1})]
    assert [d.source for d in data.documents] == ["mini:d1", "mini:d2"]
    from conftest import shared_data

    shared_data("squad-dev")
    squad = load_named("squad-dev")
    assert len(squad.samples) == 5696 and len(squad.documents) == 1048
    assert squad.head(300, seed=0).fingerprint == squad.head(300, seed=0).fingerprint
    assert squad.head(300, seed=0).fingerprint != squad.head(300, seed=1).fingerprint


def test_testset_questions_are_drawn_from_sentences() -> None:
    question, answer, kind = _question_for("The company was founded in 1998 by two students.") or ("", "", "")
    assert (question, answer, kind) == (
        "The company was founded in what year by two students?",
        "1998",
        "when",
    )
    made = _question_for("The museum holds 4,500 paintings from the nineteenth century.")
    assert made == ("The museum holds how many paintings from the nineteenth century?", "4,500", "how")
    assert _question_for("it is fine and good and well and nice and so on and on.") is None
    assert question_type("How many people live there?") == "how"


# -- the run store ----------------------------------------------------------------------------------
def _record(run_id: str, results: list[SampleResult]) -> RunRecord:
    from eval.stats import summarize_all

    return RunRecord(run_id, "2026-01-01T00:00:00Z", "mini", {"models": {"generator": "g", "adapter": None}},
                     summarize_all(results), results)  # fmt: skip


def test_run_store_round_trip_prefix_latest_and_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    samples = [EvalSample("1", "q 1", ["a 1"])]
    store.start("20260101-000000-aaaaaa", "mini", {"seed": 0}, samples)
    first = _result("1", 0, f1=1.0, judge=None)
    first.errors["judge"] = "unparseable JSON"
    store.add_result("20260101-000000-aaaaaa", first)
    # an interrupted run keeps what it finished
    assert store.get("20260101-000000").status == "interrupted"
    assert store.get("20260101-000000").results[0].errors == {"judge": "unparseable JSON"}
    record = _record("20260101-000000-aaaaaa", [first])
    store.finish(record)
    back = store.get("latest")
    assert back.status == "complete" and back.summary["judge"].failed == 1 and back.summary["f1"].mean == 1.0
    assert store.samples(back.id)["1"].answers == ["a 1"]
    store.start("20260101-000001-bbbbbb", "mini", {})
    with pytest.raises(RunNotFoundError, match="several runs"):
        store.resolve("20260101-00000")
    with pytest.raises(RunNotFoundError, match="no evaluation run"):
        store.get("nope")
    assert [r["id"] for r in store.runs()] == ["20260101-000001-bbbbbb", "20260101-000000-aaaaaa"]
    store.close()


# -- selection and cost -----------------------------------------------------------------------------
def test_selection_ranks_likely_wrong_answers_and_finetune_reads_it(tmp_path: Path) -> None:
    passage = Passage(
        1, "/d/eiffel.md", None, 0, 60, 1, 0.9, "The Eiffel Tower opened in 1889 in Paris.", True
    )
    other = Passage(2, "/d/louvre.md", None, 0, 40, 2, 0.5, "The Louvre is a museum in Paris.", False)

    def res(sid: str, answer: str, grounding: float, replicate: int = 0) -> SampleResult:
        sentence = FlaggedSentence(answer, grounding, grounding < 0.5, evidence=[1])
        return SampleResult(sid, replicate, f"question {sid}?", answer, passages=[passage, other],
                            grounding=grounding, sentences=[sentence])  # fmt: skip

    results = [
        res("right", "It opened in 1889.", 0.9),
        res("wrong", "It opened in 1920.", 0.2),
        res("unlabelled", "Paris has towers.", 0.3),
        res("unlabelled", "Nothing to do with it.", 0.3, replicate=1),
    ]
    samples = {
        "right": EvalSample("right", "question right?", ["1889"], [passage.text]),
        "wrong": EvalSample("wrong", "question wrong?", ["1889"], [passage.text]),
        "unlabelled": EvalSample("unlabelled", "question unlabelled?"),
    }
    record = _record("r", results)
    chosen = select(record, samples, n=2)
    assert [c.id for c in chosen] == ["wrong", "unlabelled"]
    assert chosen[0].reasons[0].startswith("wrong") and chosen[0].answer == "1889"
    assert any(r.startswith("replicate disagreement") for r in chosen[1].reasons)
    counts = write_selection(chosen, tmp_path / "sel.jsonl")
    assert counts["labelled"] == 1 and counts["unlabelled"] == 1
    from finetune.data import jsonl_examples

    examples = jsonl_examples(tmp_path / "sel.jsonl")
    assert len(examples) == 1 and examples[0].answer == "1889"
    assert examples[0].question == "question wrong?" and "1889" in examples[0].oracle.text  # type: ignore[union-attr]
    assert "Louvre" in examples[0].distractors[0].text


def test_selection_adds_thumbs_down_feedback_with_corrections(tmp_path: Path) -> None:
    from rag_app.answer import Answer, Citation
    from rag_app.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "data")
    citation = Citation(
        1, "/d/eiffel.md", None, 0, 40, 1, 0.9, "The Eiffel Tower opened in 1889.", cited=True
    )
    answer = Answer("When did it open?", "It opened in 1920 [1].", [citation], None)
    store.add(answer, rating=-1, index_dir=tmp_path / "index", correction="It opened in 1889.")
    store.add(answer, rating=-1, index_dir=tmp_path / "other-index")
    chosen = select(_record("r", []), {}, n=10, feedback=store, index_dir=str(tmp_path / "index"))
    store.close()
    assert len(chosen) == 1 and chosen[0].answer == "It opened in 1889." and chosen[0].score == 1.0
    assert chosen[0].reasons == ["thumbs-down", "user correction"]


def test_cost_estimate_counts_calls_tokens_and_minutes() -> None:
    settings = Settings()
    est = estimate(questions=100, replicates=2, probe_calls=30, judge_calls=0, settings=settings,
                   seconds_per_answer=3.0, basis="calibration")  # fmt: skip
    assert est.generator_calls == 200 and est.probe_calls == 30
    g = settings.generator
    assert est.completion_tokens == 230 * g.max_new_tokens
    assert est.minutes == pytest.approx(230 * 3.0 / 60)
    assert "judge calls: 0" in "\n".join(est.lines())
    unknown = estimate(questions=1, replicates=1, probe_calls=0, judge_calls=5, settings=settings,
                       seconds_per_answer=None, basis="x")  # fmt: skip
    assert unknown.minutes is None and unknown.basis == "none" and "unknown" in "\n".join(unknown.lines())


def test_missing_named_dataset_says_where_it_comes_from_and_what_else_works(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"passages\.jsonl \+ qa\.jsonl.*--dataset my-questions\.jsonl"):
        load_named("squad-dev", tmp_path)
