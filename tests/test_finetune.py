"""The training recipes on a tiny random-weight Llama (2 layers, hidden 64) built here.

Each recipe must do more than run: its trainable parameters change, the loss falls on a
repeated batch, saved adapters reload to identical outputs, and configs round-trip as YAML.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("trl")
pytest.importorskip("datasets")

import train_fixtures  # noqa: E402
from train_fixtures import one_thread  # noqa: E402, F401  (the autouse fixture)

from finetune import config as cfg  # noqa: E402
from finetune.config import (  # noqa: E402
    RECIPES,
    CausalPretrainRecipe,
    ContinuedPretrainRecipe,
    DataSource,
    GroundedDataRecipe,
    LoraArgs,
    MaskedPretrainRecipe,
    PromptArgs,
    SFTRecipe,
    TrainArgs,
    TrainingError,
    load_config,
    save_config,
)
from rag_app.errors import ConfigError  # noqa: E402
from rag_app.prompting import NOT_FOUND  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPICS = train_fixtures.TOPICS
_corpus_docs = train_fixtures.corpus_docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for i, doc in enumerate(_corpus_docs()):
        (folder / f"doc{i}.txt").write_text(doc, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama (2 layers, hidden 64) with a BPE tokenizer and a ChatML template."""
    return train_fixtures.build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


def _grounded_rows(tmp_path: Path, n: int = 12) -> Path:
    """question/context/answer JSONL turned into chat rows by the real builder."""
    from finetune.data import write_dataset

    rows: list[dict[str, Any]] = []
    for i, topic in enumerate(TOPICS[:n]):
        rows.append(
            {
                "question": f"When was the {topic} built?",
                "context": f"The {topic} near the old town was built in {1800 + 7 * i}.",
                "answer": str(1800 + 7 * i),
            }
        )
    rows.append(
        {"question": "Who owns the moon?", "context": "The garden has one small cafe.", "answer": None}
    )
    source = tmp_path / "qca.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_dataset(
        GroundedDataRecipe(
            source="jsonl", path=source, distractors=1, validation_share=0.2, out=tmp_path / "d"
        )
    )
    return tmp_path / "d"


def _repeated(data: Path, tmp_path: Path, times: int = 8) -> Path:
    """The first training row repeated: one batch the loss must fall on."""
    first = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "repeated.jsonl"
    path.write_text((first + "\n") * times, encoding="utf-8")
    return path


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# -- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_config_round_trips_as_yaml(name: str, tmp_path: Path) -> None:
    recipe = RECIPES[name]()
    path = save_config(recipe, tmp_path / f"{name}.yaml")
    assert load_config(path) == recipe
    assert load_config(path, RECIPES[name]) == recipe


def test_changed_values_round_trip(tmp_path: Path) -> None:
    recipe = SFTRecipe(
        method="prefix",
        train=TrainArgs(max_steps=7, learning_rate=1e-3, max_minutes=2.5),
        lora=LoraArgs(r=4, target_modules="all-linear"),
        prompt=PromptArgs(num_virtual_tokens=5, prefix_projection=True),
        name="x",
    )
    assert load_config(save_config(recipe, tmp_path / "c.yaml")) == recipe


def test_every_shipped_config_loads() -> None:
    shipped = sorted((ROOT / "finetune" / "configs").glob("*.yaml"))
    assert len(shipped) >= 5
    kinds = {type(load_config(path)).__name__ for path in shipped}
    assert kinds >= {"SFTRecipe", "CausalPretrainRecipe", "MaskedPretrainRecipe", "ContinuedPretrainRecipe"}


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("recipe: sft\nmethod: lora\ntrain:\n  max_steps: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train\.max_steps"):
        load_config(path)
    path.write_text("recipe: sft\nmethod: dora\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="method"):
        load_config(path)
    with pytest.raises(ConfigError, match="bogus"):
        cfg.build_recipe(SFTRecipe, None, **{"train.max_steps": 5, "bogus": 1})


def test_qlora_on_cpu_fails_at_once_naming_lora(tmp_path: Path, settings: Settings) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: QLoRA can run here")
    from finetune.sft import sft

    recipe = SFTRecipe(method="qlora", model=str(tmp_path / "never-loaded"))
    with pytest.raises(TrainingError, match="--method lora"):
        sft(recipe, settings)


# -- data ---------------------------------------------------------------------------------------
def test_grounded_rows_cite_the_right_source_and_abstain(tmp_path: Path) -> None:
    data = _grounded_rows(tmp_path)
    card = json.loads((data / "data_card.json").read_text())
    rows = [json.loads(line) for name in ("train", "validation") for line in (data / f"{name}.jsonl").open()]
    assert card["rows"]["train"] + card["rows"]["validation"] == len(rows) == 9
    assert card["files"]["train"]["sha256"] and card["inputs"]
    for row in rows:
        target = row["completion"][0]["content"]
        user = row["prompt"][-1]["content"]
        if row["meta"]["answerable"]:
            n = row["meta"]["cited"]
            assert target.endswith(f"[{n}]")
            block = user.split(f"[{n}] ", 1)[1].split("\n\n[", 1)[0]
            assert target.rsplit(" [", 1)[0] in block  # the cited source holds the answer
        else:
            assert target == NOT_FOUND
    train_groups = {r["meta"]["passage_ids"][0] for r in rows[: card["rows"]["train"]]}
    assert card["rows"]["validation"] >= 1 and train_groups


def test_dedup_and_group_split() -> None:
    import random

    from finetune.data import Example, Passage, dedup_and_split, split_group, to_row

    rng = random.Random(0)
    passages = [Passage(f"text {i} with answer {i}", "doc", f"p{i}") for i in range(10)]
    rows = []
    for i, p in enumerate(passages):
        for _ in range(2):  # each question twice: one copy is a duplicate
            rows.append(
                to_row(
                    Example(
                        f"Q{i}?", f"answer {i}", p, [passages[(i + 1) % 10]], {"context_id": p.passage_id}
                    ),
                    random.Random(i),
                )
            )
    train, validation, dropped = dedup_and_split(rows, 0.3, seed=0)
    assert dropped == 10 and len(train) + len(validation) == 10
    assert not {split_group(r) for r in train} & {split_group(r) for r in validation}
    assert rng is not None


def test_squad_builder_uses_only_the_chosen_articles(tmp_path: Path) -> None:
    from conftest import shared_data

    from finetune.data import squad_examples

    folder = shared_data("squad-dev")
    examples = squad_examples(folder, articles=(2, 3), distractors=2, unanswerable_share=0.3, seed=1)
    titles = list(dict.fromkeys(json.loads(line)["title"] for line in (folder / "passages.jsonl").open()))
    assert {e.meta["article"] for e in examples} <= set(titles[1:3])
    answerable = [e for e in examples if e.oracle is not None]
    assert 0.6 < len(answerable) / len(examples) < 0.8
    for e in answerable[:50]:
        assert e.oracle is not None and e.answer is not None
        assert e.answer in e.oracle.text  # SQuAD answers are spans
        assert all(d.source == e.oracle.source and d is not e.oracle for d in e.distractors)


@pytest.mark.slow
def test_index_builder_grounds_questions_in_retrieved_chunks(tmp_path: Path, cache_dir: Path) -> None:
    from finetune.data import write_dataset
    from rag_app.rag import RAG

    settings = Settings(cache_dir=cache_dir, data_dir=tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, doc in enumerate(_corpus_docs()[:4]):
        (docs / f"{TOPICS[i]}.txt").write_text(
            doc.split("\n")[0] + "\n\n" + doc.split("\n")[1], encoding="utf-8"
        )
    RAG(tmp_path / "index", settings).ingest([str(docs)])
    questions = tmp_path / "q.jsonl"
    rows = [
        {"question": f"When was the {t} built?", "answer": str(1800 + 7 * i)}
        for i, t in enumerate(TOPICS[:4])
    ]
    rows.append({"question": "What is the capital of Peru?", "answer": "Lima"})  # in no chunk: dropped
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = GroundedDataRecipe(
        source="index",
        path=tmp_path / "index",
        questions=questions,
        distractors=2,
        unanswerable_share=0.0,
        validation_share=0.0,
        out=tmp_path / "d",
    )
    card = write_dataset(recipe, settings)
    assert card["questions_without_a_chunk"] == 1 and card["rows"]["train"] == 4
    for line in (tmp_path / "d" / "train.jsonl").open():
        row = json.loads(line)
        answer, cited = row["meta"]["answers"][0], row["meta"]["cited"]
        user = row["prompt"][-1]["content"]
        assert row["completion"][0]["content"] == f"{answer} [{cited}]"
        assert answer in user.split(f"[{cited}] ", 1)[1].split("\n\n[", 1)[0]
        assert user.count(answer) == 1  # distractors never contain the answer


# -- SFT, every method --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "prompt", "prefix", "full"])
def test_sft_method_learns_and_reloads_identically(method: str, tiny_model: Path, tmp_path: Path) -> None:
    from finetune.common import train_and_evaluate
    from finetune.sft import _load_rows, build_trainer, load_base

    data = _grounded_rows(tmp_path)
    lr = {"lora": 1e-2, "prompt": 0.3, "prefix": 0.3, "full": 1e-3}[method]
    recipe = SFTRecipe(
        method=method,
        model=str(tiny_model),
        data=DataSource(train=_repeated(data, tmp_path), validation=data / "validation.jsonl"),
        train=TrainArgs(
            output_dir=tmp_path / "run",
            max_steps=12,
            batch_size=4,
            learning_rate=lr,
            lr_scheduler="constant",
            logging_steps=1,
        ),
        lora=LoraArgs(r=4, alpha=8, dropout=0.0, target_modules="all-linear"),
        prompt=PromptArgs(num_virtual_tokens=4),
    )
    model, tokenizer = load_base(tiny_model, recipe)
    train, validation = _load_rows(recipe)
    trainer = build_trainer(recipe, model, tokenizer, train, validation, tiny_model)
    before = _trainable(trainer.model)
    metrics, history = train_and_evaluate(trainer, True)
    after = _trainable(trainer.model)

    assert before and all(not torch.equal(before[n], after[n]) for n in before), (
        "every trainable tensor moves"
    )
    if method != "full":
        frozen = [n for n, p in trainer.model.named_parameters() if not p.requires_grad]
        assert frozen, "the base weights stay frozen"
    assert history[-1] < 0.8 * history[0], f"loss on a repeated batch must fall: {history}"
    assert metrics["perplexity"] > 0 and metrics["steps"] == 12

    saved = tmp_path / "saved"
    trainer.save_model(str(saved))
    reloaded = _reload(method, tiny_model, saved)
    ids = tokenizer("The river near the old town", return_tensors="pt")
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**ids).logits
        got = reloaded(**ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    if method != "full":  # the app's generator loads every adapter kind (LoRA merged, virtual tokens kept)
        from rag_app.generation.transformers_backend import TransformersGenerator

        settings = Settings(cache_dir=tmp_path / "cache", generator={"adapter": str(saved)})
        completion = TransformersGenerator(settings, folder=tiny_model).generate(
            [{"role": "user", "content": "When was the river built?"}], max_new_tokens=3
        )
        assert completion.adapter == "saved" and completion.completion_tokens >= 1


def _reload(method: str, base: Path, saved: Path) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if method == "full":
        return AutoModelForCausalLM.from_pretrained(saved).eval()
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(saved)).eval()


def test_sft_end_to_end_registers_promotes_and_the_generator_loads_it(
    tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    from finetune.registry import Registry, merge, promoted_adapter
    from finetune.sft import sft
    from rag_app.generation.transformers_backend import TransformersGenerator

    data = _grounded_rows(tmp_path)
    recipe = SFTRecipe(
        method="lora",
        model=str(tiny_model),
        data=DataSource(train=data / "train.jsonl", validation=data / "validation.jsonl"),
        train=TrainArgs(output_dir=tmp_path / "run", max_steps=3, batch_size=2, learning_rate=1e-2),
        lora=LoraArgs(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
        name="first",
    )
    result = sft(recipe, settings)
    assert (result.weights / "adapter_config.json").is_file() and result.adapter_name == "first"
    assert load_config(tmp_path / "run" / "config.yaml") == recipe
    registry = Registry.from_settings(settings)
    record = registry.require("first")
    assert record.method == "lora" and record.base_hash and record.data_hash and "eval_loss" in record.metrics

    assert promoted_adapter(settings) is None
    registry.promote("first")
    with pytest.raises(ConfigError, match="trained on"):  # generator.model is still the packaged one
        promoted_adapter(settings)
    generator_settings = {"adapter": "promoted", "model": str(tiny_model)}
    tuned = settings.model_copy(
        update={"generator": settings.generator.model_copy(update=generator_settings)}
    )
    assert promoted_adapter(tuned) == record.path
    generator = TransformersGenerator(tuned, folder=tiny_model)
    assert generator.adapter_id == "first"
    completion = generator.generate(
        [{"role": "user", "content": "When was the river built?"}], max_new_tokens=4
    )
    assert completion.adapter == "first"

    from rag_app.serving import adapters_to_serve

    assert adapters_to_serve(tuned)["promoted"] == record.path

    # a merged full-model folder gives the same logits as base + adapter
    merged = merge(settings, "first", tmp_path / "merged")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        peft_logits = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model), str(record.path)
        )(input_ids=ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
    assert torch.allclose(peft_logits, merged_logits, atol=1e-4)


def test_registry_promote_rollback_log(tmp_path: Path, tiny_model: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.registry import REGISTRY_DB, Registry

    adapter = tmp_path / "adapter"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.save_pretrained(str(adapter))
    registry = Registry(tmp_path / "registry")
    for name in ("a", "b", "c"):
        registry.register(name, adapter, base_model="tiny", base_hash="h", method="lora", data_hash="d")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("a", adapter, base_model="tiny", base_hash="h", method="lora", data_hash="d")
    with pytest.raises(ConfigError, match="nothing to roll back"):
        registry.rollback()
    registry.promote("a")
    registry.promote("c")
    assert registry.promoted().name == "c"  # type: ignore[union-attr]
    assert [r.name for r in registry.records()] == ["c", "b", "a"] and registry.records()[0].promoted
    assert registry.rollback().name == "a"  # type: ignore[union-attr]
    assert registry.rollback() is None and registry.promoted() is None
    assert [h["action"] for h in registry.history()] == ["promote", "promote", "rollback", "rollback"]
    with pytest.raises(ConfigError, match="no adapter named"):
        registry.promote("zzz")
    conn = sqlite3.connect(registry.folder / REGISTRY_DB)
    migrations = [r[0] for r in conn.execute("SELECT name FROM _migrations")]
    assert migrations == ["001_initial", "002_loop_iterations"]
    conn.close()


def test_promote_makes_the_adapter_live_without_a_setting(tmp_path: Path, tiny_model: Path) -> None:
    """`adapters promote` is what the app loads by default (generator.adapter "auto", read from the
    registry's live.json with no import of finetune); rollback, "none" and another base undo it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.registry import Registry
    from rag_app.generation import adapter_folder
    from rag_app.live_adapters import live_path

    adapter = tmp_path / "adapter"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.save_pretrained(str(adapter))
    settings = Settings(data_dir=tmp_path / "data")
    settings.generator.model = str(tiny_model)
    assert settings.generator.adapter == "auto" and adapter_folder(settings) is None  # nothing promoted
    registry = Registry.from_settings(settings)
    from rag_app.models import weights_digest

    digest = weights_digest(tiny_model)
    registry.register(
        "first", adapter, base_model=str(tiny_model), base_hash=digest, method="lora", data_hash="d"
    )
    registry.register(
        "rm", adapter, base_model=str(tiny_model), base_hash=digest, method="reward", data_hash="d"
    )
    assert adapter_folder(settings) is None  # registered is not promoted
    registry.promote("first")
    assert adapter_folder(settings) == registry.require("first").path
    assert json.loads(live_path(settings.data_dir).read_text())["promoted"] == "first"
    bare = settings.model_copy(deep=True)
    bare.generator.adapter = "none"
    assert adapter_folder(bare) is None
    other = settings.model_copy(deep=True)
    other.generator.model = "SmolLM2-135M-Instruct"
    assert adapter_folder(other) is None  # trained on another base: skipped, not loaded
    other.generator.adapter = "promoted"
    with pytest.raises(ConfigError, match="trained on"):
        adapter_folder(other)
    named = settings.model_copy(deep=True)
    named.generator.adapter = "rm"
    with pytest.raises(ConfigError, match="reward model"):
        adapter_folder(named)
    registry.rollback()
    assert adapter_folder(settings) is None
    live_path(settings.data_dir).unlink()  # a registry from before live.json: any open republishes it
    registry.promote("first")
    assert adapter_folder(settings) == registry.require("first").path


# -- pretraining --------------------------------------------------------------------------------
def test_pretrain_causal_from_scratch(corpus: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.pretrain_causal import pretrain_causal

    recipe = CausalPretrainRecipe(
        corpus=[corpus],
        vocab_size=300,
        n_layer=2,
        n_embd=64,
        n_head=4,
        validation_share=0.2,
        train=TrainArgs(
            output_dir=tmp_path / "causal",
            max_steps=40,
            batch_size=4,
            learning_rate=3e-3,
            max_seq_length=32,
            logging_steps=1,
        ),
    )
    result = pretrain_causal(recipe)
    assert result.loss_history[-1] < 0.6 * result.loss_history[0]
    assert result.metrics["perplexity"] < 0.5 * result.metrics["vocab_size"]  # random weights: ~vocab size
    tokenizer = AutoTokenizer.from_pretrained(result.weights)
    assert tokenizer.chat_template and tokenizer.decode(tokenizer("The river")["input_ids"]) == "The river"
    AutoModelForCausalLM.from_pretrained(result.weights)


@pytest.mark.parametrize("nsp", [False, True])
def test_pretrain_masked(corpus: Path, tmp_path: Path, nsp: bool) -> None:
    from finetune.pretrain_masked import pretrain_masked

    recipe = MaskedPretrainRecipe(
        corpus=[corpus],
        vocab_size=300,
        n_layer=2,
        n_embd=64,
        n_head=4,
        nsp=nsp,
        validation_share=0.2,
        train=TrainArgs(
            output_dir=tmp_path / "mlm",
            max_steps=25,
            batch_size=8,
            learning_rate=3e-3,
            max_seq_length=32,
            logging_steps=1,
        ),
    )
    result = pretrain_masked(recipe)
    first, last = sum(result.loss_history[:3]) / 3, sum(result.loss_history[-3:]) / 3
    assert last < 0.8 * first, result.loss_history
    assert ("nsp_accuracy" in result.metrics) == nsp
    assert (result.weights / "config.json").is_file() and (result.weights / "tokenizer.json").is_file()


def test_pretrain_continued_on_index_chunks(
    corpus: Path, tiny_model: Path, tmp_path: Path, settings: Settings
) -> None:
    import numpy as np

    from finetune.pretrain_continued import pretrain_continued
    from finetune.registry import Registry
    from rag_app.documents import Chunk
    from rag_app.store.docstore import DOCSTORE_NAME, Docstore

    index = tmp_path / "index"
    index.mkdir()
    store = Docstore(index / DOCSTORE_NAME)
    for i, doc in enumerate(_corpus_docs()):
        chunks = [Chunk(line, 0, len(line), None, (), n) for n, line in enumerate(doc.splitlines()[:4])]
        _replace(store, f"doc{i}.txt", chunks, np.zeros((len(chunks), 4), dtype=np.float32))
    store.close()
    recipe = ContinuedPretrainRecipe(
        index=index,
        model=str(tiny_model),
        lora=LoraArgs(r=4, alpha=8, dropout=0.0, target_modules="all-linear"),
        validation_share=0.2,
        train=TrainArgs(
            output_dir=tmp_path / "cpt",
            max_steps=15,
            batch_size=4,
            learning_rate=2e-2,
            max_seq_length=32,
            logging_steps=1,
        ),
    )
    result = pretrain_continued(recipe, settings)
    assert result.metrics["eval_loss"] < result.metrics["eval_loss_before"]
    assert result.loss_history[-1] < result.loss_history[0]
    assert Registry.from_settings(settings).require(str(result.adapter_name)).method == "continued-lora"


def _replace(store: Any, source: str, chunks: list[Any], vectors: Any) -> None:
    with store.transaction():
        store.replace_document(
            source=source,
            content_hash=source,
            format="txt",
            size=1,
            mtime=0.0,
            metadata={},
            chunks=chunks,
            text_hashes=[f"{source}-{i}" for i in range(len(chunks))],
            vectors=vectors,
        )


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_data_sft_config_and_adapters(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from rag_app.cli import cli

    monkeypatch.setenv("RAG_APP_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    source = tmp_path / "qca.jsonl"
    source.write_text(json.dumps({"question": "Q?", "context": "C with A.", "answer": "A"}) + "\n")
    out = runner.invoke(
        cli,
        [
            "finetune",
            "data",
            "--source",
            "jsonl",
            "--path",
            str(source),
            "--out",
            str(tmp_path / "d"),
            "--validation-share",
            "0",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["train"] == 1
    saved = tmp_path / "sft.yaml"
    out = runner.invoke(
        cli, ["finetune", "sft", "--method", "prompt", "--max-steps", "3", "--save-config", str(saved)]
    )
    assert out.exit_code == 0, out.output
    assert load_config(saved).method == "prompt" and load_config(saved).train.max_steps == 3
    if not torch.cuda.is_available():
        out = runner.invoke(cli, ["finetune", "sft", "--method", "qlora"])
        assert out.exit_code == 2 and "--method lora" in out.output
    out = runner.invoke(cli, ["adapters", "ls"])
    assert out.exit_code == 0 and "no adapters registered" in out.output
    out = runner.invoke(cli, ["adapters", "promote", "missing"])
    assert out.exit_code == 2 and "no adapter named" in out.output


def test_time_limit_stops_before_the_step_that_would_overrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-minutes: training stops when the time left is shorter than the longest step so far,
    so a 3-minute budget with 100-second steps ends after one step, not at 200 s."""
    from transformers import TrainerControl

    from finetune import common

    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    limit = common.time_limit(3)  # 180 s
    control = TrainerControl()
    steps = 0
    while not control.should_training_stop and steps < 10:
        limit.on_step_begin(None, None, control)
        clock[0] += 100.0
        limit.on_step_end(None, None, control)
        steps += 1
    assert steps == 1 and clock[0] == 100.0
    clock[0], steps = 0.0, 0
    quick = common.time_limit(3)
    control = TrainerControl()
    while not control.should_training_stop:
        quick.on_step_begin(None, None, control)
        clock[0] += 10.0
        quick.on_step_end(None, None, control)
        steps += 1
    assert steps == 17 and clock[0] <= 180.0  # stops at 170 s: a step more would pass 180
