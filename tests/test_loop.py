"""The retraining loop: the gate, the lock, crash safety, and an iteration end to end on a tiny model.

The end-to-end iteration runs every real step (eval run -> select -> SFT rows and pairs -> SFT
then DPO on a tiny random Llama -> eval run -> decision -> registry record). The gate's decisions
are checked on paired results built to be better, worse, or better but riskier.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import train_fixtures  # noqa: E402
from eval_fixtures import DOCS, ExtractiveGenerator, build_index  # noqa: E402
from train_fixtures import one_thread  # noqa: E402, F401  (the autouse fixture)

from eval.loop import LoopSettings, decide, loop_lock, run_iteration, split_ids  # noqa: E402
from eval.types import SampleResult  # noqa: E402
from rag_app.errors import ConfigError  # noqa: E402
from rag_app.generation.base import Completion  # noqa: E402
from rag_app.prompting import NOT_FOUND  # noqa: E402
from rag_app.rag import RAG  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    ("Who designed the Northbridge tunnel?", "John Miller", "/docs/engineer.md"),
    ("When was the Northbridge tunnel completed?", "1998", "/docs/engineer.md"),
    ("How long did the tunnel work take?", "six years", "/docs/engineer.md"),
    ("What did the tunnel team use?", "a new concrete mix", "/docs/engineer.md"),
    ("Who founded the Lakeside clinic?", "Priya Sharma", "/docs/doctor.md"),
    ("When did Priya Sharma open the clinic?", "2005", "/docs/doctor.md"),
    ("Whom does the clinic treat for free?", "children", "/docs/doctor.md"),
    ("What causes the tides?", "the gravity of the moon", "/docs/tides.md"),
    ("When do spring tides happen?", "at full moon and at new moon", "/docs/tides.md"),
    ("What does lava cool into?", "basalt", "/docs/volcano.md"),
    ("What feeds volcanic eruptions?", "Magma chambers", "/docs/volcano.md"),
    ("What nationality is John Miller?", "German", "/docs/engineer.md"),
]


def _results(
    values: list[float], wrong: list[float] | None = None, latency: float = 1.0
) -> list[SampleResult]:
    out = []
    for i, v in enumerate(values):
        metrics = {"f1": v, "latency_s": latency}
        if wrong is not None:
            metrics["wrong_shown"] = wrong[i]
        out.append(SampleResult(f"q{i}", 0, f"question {i}", "answer", metrics=metrics))
    return out


# -- the gate -----------------------------------------------------------------------------------
def test_gate_promotes_a_significant_gain_and_refuses_the_rest() -> None:
    n = 40
    base = _results([0.2] * n, [0.3 if i % 3 == 0 else 0.0 for i in range(n)])
    better = _results(
        [0.6 + 0.01 * (i % 5) for i in range(n)], [0.3 if i % 3 == 0 else 0.0 for i in range(n)]
    )
    decision = decide(base, better, "f1", 0.05)
    assert decision.promote and "significant gain" in decision.reason
    worse = _results([0.1] * n, [0.3 if i % 3 == 0 else 0.0 for i in range(n)])
    refused = decide(base, worse, "f1", 0.05)
    assert not refused.promote and "significantly worse on f1" in refused.reason
    same = decide(base, _results([0.2] * n, [0.3 if i % 3 == 0 else 0.0 for i in range(n)]), "f1", 0.05)
    assert not same.promote and "no significant gain" in same.reason
    riskier = _results([0.6 + 0.01 * (i % 5) for i in range(n)], [1.0] * n)  # better F1, far more wrong shown
    risky = decide(base, riskier, "f1", 0.05)
    assert not risky.promote and "wrong_shown" in risky.reason
    slower = [
        SampleResult(r.sample_id, 0, r.question, r.answer, metrics={**r.metrics, "latency_s": 9.0 + i % 3})
        for i, r in enumerate(better)
    ]
    assert "latency_s" in decide(base, slower, "f1", 0.05).reason


def test_frozen_split_is_stable_as_questions_are_added() -> None:
    ids = [f"q{i}" for i in range(200)]
    frozen, pool = split_ids(ids, 0.3, 0)
    assert 40 < len(frozen) < 80 and set(frozen).isdisjoint(pool)
    more_frozen, _ = split_ids([*ids, *(f"new{i}" for i in range(100))], 0.3, 0)
    assert set(frozen) <= set(more_frozen)


def test_a_second_iteration_refuses_while_one_runs(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, sys
            sys.path.insert(0, {str(ROOT)!r})
            from pathlib import Path
            from eval.loop import loop_lock
            with loop_lock(Path({str(tmp_path)!r})):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        settings = Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path)
        with pytest.raises(ConfigError, match=rf"already running \(pid {holder.pid}"):
            run_iteration(settings, LoopSettings(index=tmp_path / "none", dataset="x.jsonl"))
        os.kill(holder.pid, signal.SIGKILL)  # a crashed iteration: the OS drops its lock
        holder.wait(timeout=10)
        with loop_lock(tmp_path):
            pass
    finally:
        holder.kill()


# -- an iteration on a tiny model -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixtures.build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tuple(DOCS.values()))


@pytest.fixture()
def world(tmp_path: Path, tiny_model: Path, embedder: Any) -> tuple[Settings, LoopSettings]:
    settings = Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    settings.generator.model = str(tiny_model)
    settings.generator.max_new_tokens = 12
    settings.guard.verifier = False
    index = build_index(tmp_path / "index", settings, embedder)
    dataset = tmp_path / "qa.jsonl"
    rows = [
        {"id": f"q{i}", "question": q, "answer": a, "context": DOCS[src]}
        for i, (q, a, src) in enumerate(QUESTIONS)
    ]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loop = LoopSettings(
        index=index, dataset=str(dataset), eval_share=0.4, eval_limit=None, pool_limit=None, select_n=10,
        budget_minutes=0.05, lora_rank=2,
    )  # fmt: skip
    return settings, loop


def test_iteration_end_to_end_records_lineage_and_decision(world: tuple[Settings, LoopSettings]) -> None:
    from eval.labelling import LabellingQueue
    from eval.select import Candidate
    from finetune.registry import Registry

    settings, loop = world
    with LabellingQueue(settings.data_dir) as queue:  # a question a person labelled since the last iteration
        queue.add([Candidate("x", "Who owns the clinic?", 1.0, [], DOCS["/docs/doctor.md"], "d", None, "?")],
                  index_dir=str(loop.index))  # fmt: skip
        queue.label(1, "Priya Sharma")
    record = run_iteration(settings, loop.model_copy(update={"pool_limit": 4}))
    assert record["pool"]["selected"]["labelled_by_people"] == 1
    failures = (Path(record["work_dir"]) / "failures.jsonl").read_text(encoding="utf-8")
    assert "Who owns the clinic?" in failures and "Priya Sharma" in failures
    registry = Registry.from_settings(settings)
    candidate = registry.require(record["candidate"])
    assert candidate.method == "dpo" and record["method"] == "sft-dpo"
    assert record["parent"] is None and set(record["runs"]) == {"base", "pool", "candidate"}
    assert set(record["data_hashes"]) == {"failures", "sft", "pairs"}
    sft_rows = record["sft_rows"]  # the SFT rows' makeup, in the record and in the data card
    card = json.loads((Path(record["work_dir"]) / "sft-data" / "data_card.json").read_text(encoding="utf-8"))
    assert (
        card["rows"] == sft_rows
        and sft_rows["rows"] == sft_rows["fix"] + sft_rows["anchor"] + sft_rows["not_found"]
    )
    assert sft_rows["not_found"] <= loop.max_not_found_share * sft_rows["rows"]
    assert record["settings"]["replay_share"] == 0.5 and record["settings"]["max_not_found_share"] == 0.1
    assert record["frozen_split"]["questions"] >= 2 and record["pool"]["selected"]["labelled"] >= 1
    assert {"evaluate_current_s", "train_s", "calibrate_s", "evaluate_candidate_s"} <= set(record["stages"])
    # the candidate answered the pool questions it was not trained on, through the real app; a random
    # model has too few right answers among them to fit a verdict: what answers it had keep the
    # packaged weights, and with no answer at all it is left with the lexical verdict
    verdict = record["candidate_verdict"]
    assert verdict["fitted"] is False and "calibration.jsonl" in os.listdir(record["work_dir"])
    assert (Path(candidate.path) / "verdict-model.json").exists() == (verdict["rows"] > 0)
    # a random tiny model gains nothing significant: nothing is promoted, and the record says why
    assert not record["promoted"] and registry.promoted() is None and "kept" in record["reason"]
    (stored,) = registry.iterations()
    assert stored["candidate"] == record["candidate"] and stored["reason"] == record["reason"]


# -- the SFT rows: fixes, anchors (the current model's right answers) and capped abstentions ------
def _pool_result(i: int, answer: str, shown: list[str], *, abstained: bool = False) -> SampleResult:
    from eval.types import Passage

    question = QUESTIONS[i][0]
    passages = [
        Passage(n, src, None, 0, len(DOCS[src]), n, 1.0, DOCS[src], f"[{n}]" in answer)
        for n, src in enumerate(shown, 1)
    ]
    return SampleResult(f"q{i}", 0, question, answer, abstained=abstained, passages=passages)


def _loop_rows_world(tmp_path: Path) -> tuple[Path, list[SampleResult], dict[str, Any]]:
    """Failures q0-q6 and q11 (answerable) plus a person's "unanswerable" label; pool answers: right
    for q0 (also a failure), q7, q9 and q10, wrong for q1, an abstention for q2, and q4 right in
    words but citing a passage without the answer."""
    from eval.types import EvalSample

    failures = tmp_path / "failures.jsonl"
    rows: list[dict[str, Any]] = [
        {
            "id": f"q{i}",
            "question": QUESTIONS[i][0],
            "answer": QUESTIONS[i][1],
            "context": DOCS[QUESTIONS[i][2]],
        }
        for i in (0, 1, 2, 3, 4, 5, 6, 11)
    ]
    rows.append({"id": "label-1", "question": "Who owns the tunnel?", "answer": None,
                 "context": DOCS["/docs/tides.md"]})  # fmt: skip
    failures.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    eng, doc, tides, volc = (f"/docs/{n}.md" for n in ("engineer", "doctor", "tides", "volcano"))
    results = [
        _pool_result(0, "John Miller [1]", [eng, doc, tides]),
        _pool_result(1, "2005 [1]", [eng, doc]),
        _pool_result(2, NOT_FOUND, [eng, volc], abstained=True),
        _pool_result(4, "Priya Sharma [2]", [doc, tides]),
        _pool_result(7, "The gravity of the moon [2]", [volc, tides, eng]),
        _pool_result(9, "basalt [1]", [volc, doc]),
        _pool_result(10, "[1] Magma chambers", [volc, tides]),
    ]
    samples = {
        f"q{i}": EvalSample(f"q{i}", q, answers=[a], contexts=[DOCS[src]])
        for i, (q, a, src) in enumerate(QUESTIONS)
    }
    return failures, results, samples


def _target(row: dict[str, Any]) -> str:
    return str(row["completion"][0]["content"])


def test_loop_rows_replay_right_answers_and_cap_abstention(tmp_path: Path) -> None:
    from eval.loop_data import loop_sft_rows, right_answers, write_loop_sft

    failures, results, samples = _loop_rows_world(tmp_path)
    assert {r.sample_id for r in right_answers(results, samples)} == {"q0", "q7", "q9", "q10"}
    app_answers = {r.sample_id: r.answer for r in results}
    for share in (0.1, 0.3):
        rows, counts = loop_sft_rows(
            failures, results, samples, replay_share=0.5, max_not_found_share=share, seed=0
        )
        anchors = [r for r in rows if r["meta"]["origin"] == "anchor"]
        fixes = [r for r in rows if r["meta"]["origin"] == "fix"]
        found_none = [r for r in rows if _target(r) == NOT_FOUND]
        # anchors: right pool answers, the model's own answer word for word, over the prompt it saw
        assert anchors and len(anchors) <= 0.5 * len(fixes) and counts["anchor"] == len(anchors)
        for row in anchors:
            assert row["meta"]["id"] in {"q0", "q7", "q9", "q10"}
            assert _target(row) == app_answers[row["meta"]["id"]]
            cited = row["meta"]["cited"]
            assert (
                f"[{cited}] " + " ".join(DOCS[QUESTIONS[int(row["meta"]["id"][1:])][2]].split())
                in (row["prompt"][-1]["content"])
            )
        # an anchored question is not also a fix; fixes keep their passage and their gold answer
        assert not {r["meta"]["id"] for r in anchors} & {r["meta"]["id"] for r in fixes}
        assert all(_target(r) != NOT_FOUND and r["meta"]["answerable"] for r in fixes)
        # abstention: capped, and only where the sources lack the answer
        assert len(found_none) <= share * len(rows) and counts["not_found"] == len(found_none)
        assert counts["rows"] == len(rows) and counts["fix"] == len(fixes)
        for row in found_none:
            assert row["meta"]["origin"] == "not_found" and not row["meta"]["answerable"]
            assert row["meta"].get("id") not in {r["meta"]["id"] for r in fixes}  # never a fix's question
            assert row["meta"].get("id") in {
                "label-1",
                *(r["meta"]["id"] for r in anchors),
                "q7",
                "q9",
                "q10",
            }
            if row["meta"]["kind"] == "removed_passage":
                i = int(row["meta"]["id"][1:])
                assert QUESTIONS[i][1].lower() not in row["prompt"][-1]["content"].lower()
            else:
                assert row["meta"]["kind"] == "labelled_unanswerable" and row["meta"]["id"] == "label-1"
    assert counts["not_found_removed_passage"] >= 1 and counts["not_found_labelled_unanswerable"] == 1
    _, tight_counts = loop_sft_rows(
        failures, results, samples, replay_share=0.5, max_not_found_share=0.1, seed=0
    )
    assert (
        tight_counts["not_found"] == tight_counts["not_found_labelled_unanswerable"] == 1
    )  # people's labels first
    assert tight_counts["not_found_left_out"] >= 1

    # no rehearsal: the right-answered failure stays a fix (gold target) and gets no abstention twin
    rows, counts = loop_sft_rows(
        failures, results, samples, replay_share=0.0, max_not_found_share=0.3, seed=0
    )
    assert counts["anchor"] == 0 and "q0" in {r["meta"]["id"] for r in rows if r["meta"]["origin"] == "fix"}
    assert "q0" not in {r["meta"].get("id") for r in rows if _target(r) == NOT_FOUND}

    # the data card states the counts and the settings; every row is a training row
    card = write_loop_sft(
        failures, tmp_path / "sft-data", results, samples, replay_share=0.5, max_not_found_share=0.1, seed=0
    )
    written = [json.loads(line) for line in (tmp_path / "sft-data" / "train.jsonl").read_text().splitlines()]
    assert card["rows"] == tight_counts and len(written) == card["rows"]["rows"]
    assert card["config"]["replay_share"] == 0.5 and card["config"]["max_not_found_share"] == 0.1
    on_disk = json.loads((tmp_path / "sft-data" / "data_card.json").read_text())
    assert on_disk["rows"]["anchor"] == sum(r["meta"]["origin"] == "anchor" for r in written)


def test_sft_loss_is_on_the_completion_only(tmp_path: Path, tiny_model: Path) -> None:
    """The installed TRL masks the prompt of prompt/completion rows: labels are -100 up to the
    assistant's answer, and the answer's tokens (and the end of turn) are what the loss sees."""
    from finetune.config import DataSource, LoraArgs, SFTRecipe, TrainArgs
    from finetune.sft import build_trainer, load_base

    row = {
        "prompt": [{"role": "system", "content": "Answer from the sources."},
                   {"role": "user", "content": "Sources: [1] The river was built in 1800. Question: When?"}],
        "completion": [{"role": "assistant", "content": "1800 [1]"}],
    }  # fmt: skip
    recipe = SFTRecipe(
        model=str(tiny_model), data=DataSource(train=tmp_path / "train.jsonl", validation=None),
        train=TrainArgs(output_dir=tmp_path / "run", max_steps=1), lora=LoraArgs(r=2),
    )  # fmt: skip
    model, tokenizer = load_base(tiny_model, recipe)
    trainer = build_trainer(recipe, model, tokenizer, [row], [], tiny_model)
    example = trainer.train_dataset[0]
    ids, labels = example["input_ids"], example["labels"]
    prompt_ids = list(
        tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
    )
    assert ids[: len(prompt_ids)] == list(prompt_ids)
    assert all(label == -100 for label in labels[: len(prompt_ids)])
    learnt = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    assert learnt.strip().startswith("1800 [1]") and "Question" not in learnt


class _Abstains:
    model_id = "abstains"
    adapter_id: str | None = None

    def generate(self, messages: Any, **_: object) -> Completion:
        return Completion(text=NOT_FOUND, model=self.model_id)

    def stream(self, messages: Any, **_: object) -> Any:
        yield NOT_FOUND

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_a_candidate_made_worse_is_not_promoted(world: tuple[Settings, LoopSettings], embedder: Any) -> None:
    from finetune.registry import Registry

    settings, loop = world

    def opener(run_settings: Settings, index: Path) -> RAG:
        # the current model answers from its sources; the candidate (any adapter set) abstains on everything
        worse = run_settings.generator.adapter not in (None, "none")  # the base is evaluated bare
        generator = _Abstains() if worse else ExtractiveGenerator()
        return RAG.open(index, run_settings, embedder=embedder, generator=generator)

    record = run_iteration(settings, loop.model_copy(update={"eval_share": 0.8}), opener=opener)
    main = next(e for e in record["evidence"] if e["metric"] == "f1")
    assert main["b"] < main["a"] and not record["promoted"]
    assert Registry.from_settings(settings).promoted() is None


def test_kill_during_training_leaves_the_promoted_adapter(
    world: tuple[Settings, LoopSettings], tmp_path: Path
) -> None:
    from finetune.registry import Registry

    settings, loop = world
    registry = Registry.from_settings(settings)
    adapter = tmp_path / "current-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    registry.register(
        "current", adapter, base_model=settings.generator.model, base_hash="x", method="sft", data_hash="y"
    )
    registry.promote("current")
    marker = tmp_path / "training"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        from pathlib import Path
        from eval.loop import LoopSettings, run_iteration
        from eval_fixtures import ExtractiveGenerator
        from rag_app.rag import RAG
        from rag_app.settings import Settings
        settings = Settings.model_validate_json({settings.model_dump_json()!r})
        loop = LoopSettings.model_validate_json({loop.model_dump_json()!r})
        def train(*args):
            Path({str(marker)!r}).write_text("started")
            time.sleep(120)
        def opener(s, index):
            return RAG.open(index, s, generator=ExtractiveGenerator())
        run_iteration(settings, loop, train=train, opener=opener)
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 300
        while not marker.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert marker.exists(), "the iteration never reached training"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
    promoted = registry.promoted()
    assert promoted is not None and promoted.name == "current"
    assert registry.iterations() == []  # nothing half-recorded
    with loop_lock(Path(settings.data_dir)):  # the next iteration can start
        pass


def test_iteration_is_logged_to_a_local_mlflow_folder(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    from eval.tracking import log_iteration

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    evidence = [{"metric": "f1", "a": 0.2, "b": 0.4, "diff": 0.2, "p_adjusted": 0.01}]
    record = {
        "candidate": "loop-dpo-1", "parent": None, "method": "sft-dpo", "promoted": True,
        "reason": "significant gain", "evidence": evidence, "stages": {"train_s": 12.0},
        "settings": {"primary_metric": "f1"}, "data_hashes": {"sft": "abc"}, "runs": {"base": "r1"},
        "frozen_split": {"ids_hash": "h"},
    }  # fmt: skip
    run_id = log_iteration(record, data_dir=tmp_path, adapter_dir=adapter)
    assert (tmp_path / "mlruns").is_dir()
    run = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri()).get_run(run_id)
    assert run.data.metrics["candidate.f1"] == 0.4 and run.data.metrics["promoted"] == 1.0
    assert run.data.params["parent"] == "base" and run.data.tags["decision"] == "promoted"


def test_triggers_fire_on_feedback_documents_and_time() -> None:
    from eval.triggers import Triggers, due, last_snapshot

    last = {"thumbs_down": 3, "documents": 100, "at": "2026-12-01T00:00:00+00:00"}
    quiet = {"thumbs_down": 10, "documents": 120, "at": "2026-12-01T05:00:00+00:00"}
    triggers = Triggers(thumbs_down=20, new_documents=50, every_hours=6)
    assert due(quiet, last, triggers) is None
    assert due(quiet | {"thumbs_down": 23}, last, triggers) == "20 new thumbs-down answers"
    assert due(quiet | {"documents": 160}, last, triggers) == "60 new documents in the index"
    assert (
        due(quiet | {"at": "2026-12-01T07:00:00+00:00"}, last, triggers) == "7.0 h since the last iteration"
    )
    assert due(quiet, None, triggers) == "no iteration has run yet"
    assert last_snapshot([{"snapshot": last}, {"snapshot": quiet}]) == quiet


# -- the candidate's own verdict -----------------------------------------------------------------
class _Answers:
    """A RAG stand-in whose answers carry verdict features: right ones with a confident verifier."""

    def __init__(self, adapter: Path) -> None:
        from types import SimpleNamespace

        self.generator = SimpleNamespace(model_id="tiny", adapter_id=adapter.name)
        self.adapter = adapter
        self.provisional_seen = False
        self.closed = False

    def ask(self, question: str) -> Any:
        from types import SimpleNamespace

        from rag_app.guard.verdict import VerdictModel

        held = VerdictModel.load(self.adapter / "verdict-model.json")
        self.provisional_seen = held.info == {
            "generator": "tiny",
            "adapter": self.adapter.name,
            "provisional": True,
        }
        right = question.endswith("right")
        features = {
            "lexical": 0.9,
            "verifier": 0.95 if right else 0.1,
            "mean_logprob": -0.2 if right else -2.5,
            "min_logprob": -1.0 if right else -6.0,
            "span": 1.0 if right else 0.0,
            **{"question_cover": 0.6, "cites_best": 1.0, "retrieval": 0.5, "answer_words": 0.1},
        }
        grounding = SimpleNamespace(features=features)
        return SimpleNamespace(
            text="Priya Sharma [1]" if right else "1998 [1]", abstained=False, grounding=grounding
        )

    def close(self) -> None:
        self.closed = True


def test_the_candidate_gets_its_own_verdict_fitted_on_its_answers(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from eval.calibrate import fit_adapter_verdict
    from rag_app.answering import Answerer
    from rag_app.guard.verdict import DEFAULT_MODEL, VerdictModel

    adapter = tmp_path / "loop-sft-1"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    samples = [SimpleNamespace(question=f"q{i} {'right' if i % 2 else 'wrong'}", answers=["Priya Sharma"])
               for i in range(24)]  # fmt: skip
    fake = _Answers(adapter)
    rows_out = tmp_path / "calibration.jsonl"
    result = fit_adapter_verdict(lambda s: fake, Settings(), adapter, samples, rows_out=rows_out)
    assert fake.provisional_seen and fake.closed  # it answered under the provisional verdict
    assert result["fitted"] and result["rows"] == 24 and result["right"] == 12 and result["fit_auroc"] == 1.0
    assert len(rows_out.read_text(encoding="utf-8").splitlines()) == 24
    fitted = VerdictModel.load(adapter / "verdict-model.json")
    assert fitted.applies_to("tiny", "loop-sft-1") and "provisional" not in fitted.info
    # the answerer of that adapter loads it; guard.verdict_path still overrides it
    settings = Settings(data_dir=tmp_path / "data")
    settings.generator.adapter = str(adapter)
    assert Answerer(None, None, None, settings).verdict.info == fitted.info  # type: ignore[arg-type]
    settings.guard.verdict_path = DEFAULT_MODEL
    assert Answerer(None, None, None, settings).verdict.info != fitted.info  # type: ignore[arg-type]
    bare = Settings(data_dir=tmp_path / "data")
    bare.generator.adapter = "none"
    assert Answerer(None, None, None, bare).verdict.info != fitted.info  # type: ignore[arg-type]

    # too few right answers to fit: the packaged weights, applied to this adapter's own signals
    few = [SimpleNamespace(question=f"q{i} {'right' if i < 3 else 'wrong'}", answers=["Priya Sharma"])
           for i in range(14)]  # fmt: skip
    result = fit_adapter_verdict(lambda s: _Answers(adapter), Settings(), adapter, few)
    assert not result["fitted"] and result["right"] == 3 and "kept the packaged weights" in result["reason"]
    kept = VerdictModel.load(adapter / "verdict-model.json")
    assert kept.applies_to("tiny", "loop-sft-1") and kept.full == VerdictModel.load(DEFAULT_MODEL).full
    assert "provisional" not in kept.info
    # no answer at all: no verdict of its own (the lexical one decides), nothing left behind
    result = fit_adapter_verdict(lambda s: _Answers(adapter), Settings(), adapter, [])
    assert not result["fitted"] and not (adapter / "verdict-model.json").exists()
