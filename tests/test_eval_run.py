"""Whole evaluation runs: the runner over a real index (packaged embedder, FAISS, SQLite, guard,
RAGAS), the ``rag-app eval`` commands against a generator served over real HTTP on 127.0.0.1,
and two runs of the real SmolLM2 that must give identical answers and numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from eval_fixtures import DOCS, SAMPLES, ExtractiveGenerator, build_index
from openai_server import OpenAIServer

from eval.datasets import EvalDataset
from eval.runner import RunOptions, results_digest, run_evaluation
from eval.runs import RunStore
from eval.stats import compare_runs
from eval.types import EvalSample
from rag_app.cli import cli
from rag_app.rag import RAG

REFERENCES = {
    "q1": ("/docs/engineer.md", "John Miller is a German engineer who designed the Northbridge tunnel."),
    "q2": ("/docs/doctor.md", "She opened the clinic in 2005."),
    "q3": ("/docs/tides.md", "The gravity of the moon pulls the oceans and causes the tides."),
    "q4": ("/docs/volcano.md", "Lava from a volcano cools into basalt."),
}


def _samples() -> list[EvalSample]:
    out = []
    for s in SAMPLES:
        source, context = REFERENCES[s.id]
        out.append(EvalSample(s.id, s.question, s.answers, [context], {Path(source).name: 1}, qtype="what"))
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, settings, embedder) -> Path:
    return build_index(tmp_path_factory.mktemp("eval-run") / "index", settings, embedder)


def test_a_run_is_scored_stored_reported_and_reproducible(
    tmp_path: Path, index: Path, settings, embedder
) -> None:
    s = settings.model_copy(deep=True)
    s.retrieval.k = 2
    rag = RAG(index, s, embedder=embedder, generator=ExtractiveGenerator())
    dataset = EvalDataset("mini", _samples())
    store = RunStore(tmp_path / "runs.sqlite")
    options = RunOptions(
        replicates=2, probes=("injection",), probe_questions=2, report_dir=tmp_path / "report"
    )
    record = run_evaluation(rag, dataset, options, store=store)

    assert len(record.results) == 8 and {r.replicate for r in record.results} == {0, 1}
    summary = record.summary
    # the extractive app retrieves the right document first for every question here
    assert summary["retrieval.recall@1"].mean == 1.0 and summary["retrieval.mrr"].mean == 1.0
    assert summary["retrieval.ndcg@10"].mean == pytest.approx(1.0)
    # answers are whole source sentences: F1 is partial, EM zero, and the reference is in the answer
    assert 0.1 < summary["answer.f1"].mean < 1.0 and summary["answer.em"].mean == 0.0  # type: ignore[operator]
    for name in ("answer.bleu", "answer.rouge_l", "answer.semantic_similarity", "guard.grounding"):
        assert 0.0 <= summary[name].mean <= 1.0 and summary[name].failed == 0, name  # type: ignore[operator]
    assert summary["ragas.faithfulness"].n == 8  # the guard, run as a RAGAS metric
    assert summary["ragas.faithfulness"].mean > 0.5  # type: ignore[operator]
    assert "ragas.answer_relevancy" not in summary  # no judge configured: skipped, not faked
    manifest = record.manifest
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["index"]["corpus_hash"])
    assert manifest["models"]["generator"] == "extractive" and manifest["seed"] == 0
    assert manifest["packages"]["ragas"] and manifest["temperatures"][0] == 0.0
    assert record.hallucination["overall"]["answers"] == 8
    assert record.probes["injection"]["summary"]["cases"] > 0

    stored = store.get(record.id)
    assert stored.status == "complete" and stored.summary == record.summary
    assert results_digest(stored.results) == results_digest(record.results)
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "ragas.faithfulness" in html and "<svg" in html
    assert json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))["id"] == record.id

    again = run_evaluation(rag, dataset, RunOptions(replicates=2), store=store)
    assert results_digest(again.results) == results_digest(record.results)
    rows = compare_runs(record.results, again.results)
    assert rows and not any(r["significant"] for r in rows) and all(r["diff"] == 0 for r in rows)
    store.close()


@pytest.fixture()
def served(settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The CLI's settings: the extractive generator behind an OpenAI-compatible server on 127.0.0.1."""
    with OpenAIServer(ExtractiveGenerator(), ["extractive"]).running() as url:  # type: ignore[arg-type]
        env = {
            "RAG_APP_CACHE_DIR": str(settings.cache_dir),
            "RAG_APP_DATA_DIR": str(tmp_path / "data"),
            "RAG_APP_GENERATOR__BACKEND": "openai",
            "RAG_APP_GENERATOR__BASE_URL": url,
            "RAG_APP_GENERATOR__MODEL": "extractive",
            "RAG_APP_RETRIEVAL__K": "2",
            "RAG_APP_EVAL__JUDGE_LOCAL": "false",
            "RAG_APP_UI__REPORTS_DIR": str(tmp_path / "reports"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("RAG_APP_CONFIG", raising=False)
        yield CliRunner()


def _invoke(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout  # progress and the cost estimate go to stderr


def test_eval_commands_end_to_end(served: CliRunner, index: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text("\n".join(json.dumps(s.to_dict()) for s in _samples()) + "\n", encoding="utf-8")
    common = ["--dataset", str(dataset), "--index", str(index)]

    estimate = _invoke(served, "eval", "run", *common, "--dry-run", "--no-calibrate")
    assert "4 generator calls" in estimate and "time: unknown" in estimate
    calibrated = json.loads(
        _invoke(served, "eval", "run", *common, "--dry-run", "--json", "--probes", "bias")
    )
    assert calibrated["basis"].startswith("calibration") and calibrated["seconds_per_answer"] > 0
    assert calibrated["probe_calls"] > 0 and calibrated["judge_calls"] == 0

    out = _invoke(served, "eval", "run", *common, "--report", str(tmp_path / "r1"), "--name", "first")
    assert "answer.f1" in out and (tmp_path / "r1" / "report.html").is_file()
    first = json.loads(_invoke(served, "eval", "list", "--json"))[0]["id"]
    second = json.loads(_invoke(served, "eval", "run", *common, "--json"))["run"]
    assert (tmp_path / "reports" / second / "report.md").is_file()  # default: ui.reports_dir/RUN

    compared = json.loads(_invoke(served, "eval", "compare", first, second, "--json"))
    assert compared["metrics"] and not any(m["significant"] for m in compared["metrics"])
    assert "not significant" in _invoke(served, "eval", "compare", first, second)
    assert "html:" in _invoke(served, "eval", "report", "latest", "--out", str(tmp_path / "again"))

    counts = json.loads(
        _invoke(served, "eval", "select", first, "--n", "3", "--out", str(tmp_path / "sel.jsonl"))
    )
    assert counts["selected"] == 3 and counts["labelled"] == 3
    rows = [json.loads(line) for line in (tmp_path / "sel.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["question"] and r["context"] and r["answer"] for r in rows)

    bad = served.invoke(
        cli, ["eval", "run", "--dataset", str(tmp_path / "absent.jsonl"), "--index", str(index)]
    )
    assert bad.exit_code != 0 and "not found" in bad.output
    missing = served.invoke(cli, ["eval", "report", "no-such-run"])
    assert missing.exit_code != 0 and "no evaluation run" in missing.output


def test_missing_index_is_built_from_a_beir_corpus(served: CliRunner, tmp_path: Path) -> None:
    beir = tmp_path / "mini-beir"
    (beir / "qrels").mkdir(parents=True)
    corpus = [{"_id": Path(src).stem, "title": "", "text": text} for src, text in DOCS.items()]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n", encoding="utf-8")
    (beir / "queries.jsonl").write_text(
        json.dumps({"_id": "t", "text": "What causes the tides?"}) + "\n", encoding="utf-8"
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nt\ttides\t1\n", encoding="utf-8")
    index = tmp_path / "built"
    dry = served.invoke(cli, ["eval", "run", "--dataset", str(beir), "--index", str(index), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "would first index the 4 documents" in dry.output and not index.exists()
    )  # an estimate builds nothing
    run = served.invoke(cli, ["eval", "run", "--dataset", str(beir), "--index", str(index)])
    assert run.exit_code == 0, run.output
    assert "[1/1]" in run.output and "min left" in run.output  # progress without a terminal
    assert "generator.perplexity" not in run.output  # perplexity is opt-in
    summary = json.loads(
        _invoke(served, "eval", "run", "--dataset", str(beir), "--index", str(index), "--json")
    )
    assert (index / "manifest.json").is_file()
    assert summary["summary"]["retrieval.recall@1"]["mean"] == 1.0


@pytest.mark.slow
def test_real_smollm2_runs_twice_to_the_same_numbers(tmp_path: Path, index: Path, settings, embedder) -> None:
    s = settings.model_copy(deep=True)
    s.generator.max_new_tokens = 24
    s.generator.threads = 1
    s.retrieval.k = 2
    dataset = EvalDataset("mini", _samples()[:2])
    records = []
    for _ in range(2):
        rag = RAG(index, s, embedder=embedder)  # a fresh generator each time
        records.append(run_evaluation(rag, dataset, RunOptions(ragas=False, perplexity=True)))
        rag.close()
    a, b = records
    assert results_digest(a.results) == results_digest(b.results)
    assert a.summary == b.summary
    perplexity = a.summary["generator.perplexity"]
    assert perplexity.mean is not None and 1.0 < perplexity.mean < 1000 and perplexity.n > 10


def test_generated_testset_comes_from_the_indexed_chunks(served: CliRunner, index: Path, settings) -> None:
    from eval.datasets import generate_testset
    from rag_app.store.index import IndexStore

    store = IndexStore.open(index)
    data = generate_testset(store, 3, seed=0)
    assert (
        data == generate_testset(store, 3, seed=0)
        or data.fingerprint == generate_testset(store, 3).fingerprint
    )
    assert 1 <= len(data.samples) <= 3
    for sample in data.samples:
        answer, context = sample.answers[0], sample.contexts[0]
        assert answer in context and answer not in sample.question and sample.question.endswith("?")
        assert list(sample.relevant) == [sample.id.removeprefix("gen-")]
    store.close()
    out = json.loads(
        _invoke(served, "eval", "run", "--dataset", "generate", "-n", "3", "--index", str(index), "--json")
    )
    assert out["summary"]["retrieval.recall@10"]["mean"] > 0.5  # the chunk a question came from is found
