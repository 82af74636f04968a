"""Alignment: preference pairs, the reward model, DPO and RLHF.

The pair builder runs on real SQuAD and HaluEval rows and each negative is checked to be wrong.
The recipes run on a tiny random-weight Llama built here, on a toy set a model can separate
(chosen answers cite a source, rejected ones invent a place): each must change its trainable
parameters and move its own measure the right way (reward-model accuracy and margin, DPO's
implicit reward margin, the RLHF reward curve logged).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("trl")
pytest.importorskip("datasets")

import train_fixtures  # noqa: E402
from train_fixtures import one_thread  # noqa: E402, F401  (the autouse fixture)

from finetune.config import (  # noqa: E402
    DPORecipe,
    LoraArgs,
    PreferenceData,
    PreferenceRecipe,
    RewardRecipe,
    RLHFRecipe,
    TrainArgs,
    TrainingError,
    load_config,
)
from finetune.data import squad_examples  # noqa: E402
from finetune.preferences import (  # noqa: E402
    RULE_NEGATIVES,
    check_pairs,
    contrastive_pairs,
    feedback_pairs,
    halueval_pairs,
    is_wrong,
    model_negatives,
    normalize,
    read_pairs,
    write_preferences,
)
from rag_app.prompting import NOT_FOUND, cited_numbers, strip_citations  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev"
HALUEVAL = ROOT.parent / "shared" / "data" / "halueval-qa" / "qa_pairs.jsonl"
needs_data = pytest.mark.skipif(not SQUAD.is_dir() or not HALUEVAL.is_file(), reason="../shared/data absent")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = tuple(_toy_texts())
    return train_fixtures.build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), extra)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


def _toy_texts() -> list[str]:
    return [f"The {t} is in the old town [1]. The {t} is on the moon." for t in train_fixtures.TOPICS]


def _toy_pairs(folder: Path, topics: list[str]) -> Path:
    """Separable pairs: chosen = the sourced answer with [1], rejected = an invented place, no citation."""
    rows = []
    for topic in topics:
        prompt = [
            {"role": "system", "content": "Answer from the sources."},
            {
                "role": "user",
                "content": f"Sources:\n[1] The {topic} is in the old town.\n\nQuestion: Where is the {topic}",
            },
        ]
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": "in the old town [1]"}],
                "rejected": [{"role": "assistant", "content": "on the moon"}],
                "meta": {
                    "type": "toy",
                    "source": "toy",
                    "group": topic,
                    "passages": [f"The {topic} is in the old town."],
                    "answers": ["in the old town"],
                    "answerable": True,
                    "cited": 1,
                },
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:6] * 4), ("validation", rows[6:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return folder


def _data(folder: Path) -> PreferenceData:
    return PreferenceData(train=folder / "train.jsonl", validation=folder / "validation.jsonl")


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _adapter_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# -- pairs --------------------------------------------------------------------------------------
@needs_data
def test_each_rule_negative_is_really_wrong_on_real_squad_rows() -> None:
    examples = squad_examples(SQUAD, articles=(1, 2), distractors=2, unanswerable_share=0.2, seed=0)
    rows = contrastive_pairs(examples, seed=0)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_type.setdefault(row["meta"]["type"], []).append(row)
    assert set(by_type) == set(RULE_NEGATIVES)
    for kind, kind_rows in by_type.items():
        assert len(kind_rows) >= 20, kind
        for row in kind_rows:
            meta = row["meta"]
            chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
            assert chosen != rejected
            passages, answers, gold = meta["passages"], meta["answers"], meta["cited"]
            if kind == "answered_unanswerable":
                assert chosen == NOT_FOUND and not meta["answerable"] and gold is None
                assert meta["context_id"] not in json.dumps(row["prompt"])  # the right passage is not shown
                assert cited_numbers(rejected)[0] <= len(passages)
                continue
            assert meta["answerable"] and normalize(answers[0]) in normalize(passages[gold - 1])
            assert chosen == f"{answers[0]} [{gold}]"
            if kind == "false_abstention":
                assert rejected == NOT_FOUND
            elif kind == "wrong_citation":
                (number,) = cited_numbers(rejected)
                assert number != gold and strip_citations(rejected) == answers[0]
                assert not any(normalize(a) in normalize(passages[number - 1]) for a in answers)
            else:  # distractor_span, swapped_fact: differs from every gold answer, holds none of them
                assert is_wrong(rejected, answers)
                assert all(normalize(rejected) != normalize(a) for a in answers)
                if kind == "distractor_span":
                    assert cited_numbers(rejected)[0] != gold


@needs_data
def test_preference_file_is_deduplicated_split_by_article_and_counted(tmp_path: Path) -> None:
    recipe = PreferenceRecipe(
        squad=SQUAD,
        articles=(1, 4),
        halueval=HALUEVAL,
        halueval_pairs=(0, 59),
        max_per_type=150,
        validation_share=0.25,
        out=tmp_path / "prefs",
    )
    card = write_preferences(recipe)
    train = [json.loads(x) for x in (tmp_path / "prefs" / "train.jsonl").read_text().splitlines()]
    validation = [json.loads(x) for x in (tmp_path / "prefs" / "validation.jsonl").read_text().splitlines()]
    assert card["rows"]["train"] == len(train) and card["rows"]["validation"] == len(validation)
    assert card["groups"]["shared"] == 0
    articles = {r["meta"].get("article") for r in train} & {r["meta"].get("article") for r in validation}
    assert articles <= {None}  # no SQuAD article (so no passage) on both sides
    for kind, counts in card["per_type"].items():
        assert counts["train"] + counts["validation"] <= 150, kind
    assert card["per_type"]["halueval"]["train"] + card["per_type"]["halueval"]["validation"] == 60
    keys = [json.dumps([r["prompt"], r["chosen"], r["rejected"]]) for r in train + validation]
    assert len(keys) == len(set(keys))
    assert all(r["meta"]["pair_id"] <= 59 for r in train + validation if r["meta"]["type"] == "halueval")


@needs_data
def test_halueval_pairs_keep_the_range_and_cite_the_knowledge() -> None:
    rows = halueval_pairs(HALUEVAL, (10, 19))
    assert [r["meta"]["pair_id"] for r in rows] == list(range(10, 20))
    for row in rows:
        assert "[1]" in row["prompt"][-1]["content"]
        assert row["chosen"][0]["content"].endswith("[1]") and row["rejected"][0]["content"].endswith("[1]")
        assert row["chosen"] != row["rejected"]


def test_model_negatives_keep_only_wrong_answers() -> None:
    base = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "Paris [1]"}],
    }
    answerable = {
        **base,
        "meta": {"answerable": True, "answers": ["Paris"], "cited": 1, "type": "false_abstention"},
    }
    missing = {
        "prompt": [{"role": "user", "content": "q2"}],
        "chosen": [{"role": "assistant", "content": NOT_FOUND}],
        "meta": {"answerable": False, "answers": [], "cited": None, "type": "answered_unanswerable"},
    }
    replies = {"q": "Lyon [1]", "q2": "It is Rome [1]."}
    rows = model_negatives([answerable, missing], lambda m: replies[m[-1]["content"]], limit=5)
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("Paris [1]", "Lyon [1]"),
        (NOT_FOUND, "It is Rome [1]."),
    ]
    right = {"q": "Paris, France [1]", "q2": NOT_FOUND}
    assert model_negatives([answerable, missing], lambda m: right[m[-1]["content"]], limit=5) == []


def test_feedback_becomes_correction_and_thumbs_pairs(tmp_path: Path) -> None:
    from rag_app.answer import Answer, Citation
    from rag_app.feedback import FeedbackStore

    def answer(text: str) -> Answer:
        cite = Citation(1, "tower.txt", None, 0, 40, 0, 0.9, "The tower opened on 31 March 1889.")
        return Answer(question="When did the tower open?", text=text, citations=[cite], grounding=None)

    store = FeedbackStore(tmp_path)
    store.add(answer("In 1890 [1]."), rating=-1, index_dir="idx", correction="On 31 March 1889 [1].")
    store.add(answer("On 31 March 1889 [1]."), rating=1, index_dir="idx")
    store.close()
    rows = feedback_pairs(tmp_path)
    kinds = sorted((r["meta"]["type"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows)
    assert kinds == [
        ("feedback_correction", "On 31 March 1889 [1].", "In 1890 [1]."),
        ("feedback_rating", "On 31 March 1889 [1].", "In 1890 [1]."),
    ]
    assert all("31 March 1889" in r["prompt"][-1]["content"] for r in rows)  # the sources it was given


def test_broken_pairs_are_refused_by_row_and_the_file_kept(tmp_path: Path) -> None:
    good = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a [1]", "rejected": "b"}
    same = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a [1]", "rejected": "a [1]"}
    empty = {"prompt": [{"role": "user", "content": " "}], "chosen": "a", "rejected": "b"}
    path = tmp_path / "pairs.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in (good, same, empty))
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TrainingError, match=r"row 2: chosen and rejected are identical; row 3: empty prompt"):
        read_pairs(path)
    assert path.read_text(encoding="utf-8") == text
    with pytest.raises(TrainingError, match="row 1: no prompt"):
        check_pairs([{"chosen": "a", "rejected": "b"}], "x")


def test_shipped_alignment_configs_load() -> None:
    kinds = {
        type(load_config(p)).__name__: load_config(p)
        for p in sorted((ROOT / "finetune" / "configs").glob("*.yaml"))
    }
    assert {"PreferenceRecipe", "RewardRecipe", "DPORecipe", "RLHFRecipe"} <= set(kinds)
    assert kinds["PreferenceRecipe"].halueval_pairs == (0, 3999) and kinds["PreferenceRecipe"].articles == (
        1,
        16,
    )


# -- recipes on a tiny model ------------------------------------------------------------------
def _train_args(out: Path, steps: int, lr: float, **extra: Any) -> TrainArgs:
    return TrainArgs(
        output_dir=out, max_steps=steps, batch_size=4, learning_rate=lr, logging_steps=1, **extra
    )


def test_reward_model_learns_to_rank_chosen_above_rejected(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    from finetune.registry import Registry
    from finetune.reward import RewardModel, load_classifier, pairwise_accuracy, train_reward

    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    rows = [json.loads(x) for x in (data / "validation.jsonl").read_text().splitlines()]
    model, tokenizer = load_classifier(tiny_model)
    before = RewardModel(model, tokenizer)
    margin_before = _margin(before, rows)
    recipe = RewardRecipe(
        model=str(tiny_model),
        data=_data(data),
        train=_train_args(tmp_path / "rm", 30, 3e-3),
        lora=LoraArgs(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
        guard_baseline=False,
        name="toy-reward",
    )
    result = train_reward(recipe, settings)
    assert result.metrics["reward_pairwise_accuracy"] == 1.0
    after = RewardModel.load("toy-reward", settings)
    assert _margin(after, rows) > margin_before + 0.5
    assert pairwise_accuracy(rows, after.score_rows, prefix="x")["x_pairwise_accuracy"] == 1.0
    assert Registry.from_settings(settings).require("toy-reward").method == "reward"
    with pytest.raises(Exception, match="reward model"):
        Registry.from_settings(settings).promote("toy-reward")


def _margin(model: Any, rows: list[dict[str, Any]]) -> float:
    good = model.score_rows(rows, [r["chosen"][0]["content"] for r in rows])
    bad = model.score_rows(rows, [r["rejected"][0]["content"] for r in rows])
    return sum(g - b for g, b in zip(good, bad, strict=True)) / len(rows)


def test_reward_model_on_changed_base_weights_is_refused(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    import shutil

    from finetune.reward import RewardModel, train_reward

    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    recipe = RewardRecipe(
        model=str(base),
        data=_data(data),
        train=_train_args(tmp_path / "rm", 2, 1e-3),
        lora=LoraArgs(r=2, alpha=4, target_modules=["q_proj"]),
        guard_baseline=False,
        register_adapter=False,
    )
    result = train_reward(recipe, settings)
    train_fixtures.build_tiny_llama(base, tuple(_toy_texts()), seed=1)  # new base weights, same folder
    with pytest.raises(TrainingError, match="trained on base weights"):
        RewardModel.load(str(result.weights), settings)


def test_dpo_moves_the_reward_margin_and_registers(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    from finetune.dpo import dpo
    from finetune.registry import Registry
    from rag_app.generation import adapter_folder

    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    recipe = DPORecipe(
        model=str(tiny_model),
        data=_data(data),
        train=_train_args(tmp_path / "dpo", 20, 5e-3),
        lora=LoraArgs(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
        beta=0.1,
        name="toy-dpo",
    )
    result = dpo(recipe, settings)
    m = result.metrics
    assert abs(m["reward_margin_before"]) < 1e-6  # a fresh adapter is the reference
    assert m["reward_margin"] > 0.5 and m["reward_accuracy"] == 1.0
    assert any(v.abs().sum() > 0 for k, v in _adapter_weights(result.weights).items() if "lora_B" in k)
    registry = Registry.from_settings(settings)
    assert registry.require("toy-dpo").method == "dpo"
    registry.promote("toy-dpo")
    generator = settings.generator.model_copy(update={"model": str(tiny_model), "adapter": "promoted"})
    promoted = settings.model_copy(update={"generator": generator})
    assert adapter_folder(promoted) == registry.require("toy-dpo").path
    by_name = promoted.model_copy(
        update={"generator": promoted.generator.model_copy(update={"adapter": "toy-dpo"})}
    )
    assert adapter_folder(by_name) == registry.require("toy-dpo").path


def test_sft_then_dpo_trains_the_sft_adapter_against_itself(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    from finetune.config import DataSource, SFTRecipe
    from finetune.dpo import dpo
    from finetune.sft import sft

    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    sft_rows = [
        {"prompt": r["prompt"], "completion": r["chosen"]}
        for r in (json.loads(x) for x in (data / "train.jsonl").read_text().splitlines())
    ]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_rows), encoding="utf-8")
    lora = LoraArgs(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    sft_result = sft(
        SFTRecipe(
            model=str(tiny_model),
            data=DataSource(train=tmp_path / "sft.jsonl", validation=None),
            train=_train_args(tmp_path / "sft", 5, 5e-3),
            lora=lora,
            name="toy-sft",
        ),
        settings,
    )
    result = dpo(
        DPORecipe(
            model=str(tiny_model),
            sft_adapter="toy-sft",
            data=_data(data),
            train=_train_args(tmp_path / "dpo", 10, 5e-3),
            lora=lora,
            register_adapter=False,
        ),
        settings,
    )
    assert abs(result.metrics["reward_margin_before"]) < 1e-6  # the reference is the SFT adapter itself
    assert result.metrics["reward_margin"] > 0.1
    before, after = _adapter_weights(sft_result.weights), _adapter_weights(result.weights)
    assert set(before) == set(after)  # the SFT adapter, trained further (no "ref" copy saved)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_dpo_reference_copy_without_memory_fails_before_training(
    tiny_model: Path, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finetune.policy

    monkeypatch.setattr(finetune.policy, "available_memory", lambda: 1024)
    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    recipe = DPORecipe(
        model=str(tiny_model),
        data=_data(data),
        train=_train_args(tmp_path / "dpo", 2, 1e-3),
        reference="copy",
    )
    from finetune.dpo import dpo

    with pytest.raises(TrainingError, match="adapter-disabled"):
        dpo(recipe, settings)
    assert not (tmp_path / "dpo").exists()


def test_rlhf_grpo_updates_the_policy_and_logs_the_reward_curve(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    from finetune.rlhf import CURVE_NAME, AnswerReward, rlhf

    data = _toy_pairs(tmp_path / "pairs", train_fixtures.TOPICS)
    recipe = RLHFRecipe(
        model=str(tiny_model),
        data=_data(data),
        train=_train_args(tmp_path / "rl", 3, 5e-3),
        lora=LoraArgs(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
        guard_weight=0.5,
        num_generations=2,
        max_completion_length=8,
        name="toy-rlhf",
    )
    result = rlhf(recipe, settings)
    curve = json.loads((result.output_dir / CURVE_NAME).read_text())
    assert len(curve) == 3 and all("rewards/citation/mean" in p and "kl" in p for p in curve)
    assert any(v.abs().sum() > 0 for k, v in _adapter_weights(result.weights).items() if "lora_B" in k)
    # the reward's parts, on answers whose value is known
    reward = AnswerReward(recipe, settings)
    texts = [
        [{"role": "assistant", "content": t}]
        for t in ("in the old town [1]", "It was built by Napoleon in 1802.", NOT_FOUND, NOT_FOUND)
    ]
    kw = {
        "passages": [["The castle is in the old town."]] * 4,
        "cited": [1, 1, 1, 0],
        "answerable": [True, True, True, False],
    }
    assert reward.citation(texts, **kw) == [0.0, -0.5, 0.0, 0.0]
    assert reward.abstention(texts, **kw) == [0.0, 0.0, -0.5, 0.5]
    grounded, invented, _, _ = reward.grounding(texts, **kw)
    assert grounded > 0.5 > invented
