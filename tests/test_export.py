"""Exporting a registered adapter: bfloat16 weights that load, lineage through the loop, a data card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import train_fixtures  # noqa: E402

from finetune.config import TrainingError  # noqa: E402
from finetune.registry import Registry  # noqa: E402


def _adapter(tiny: Path, folder: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny), LoraConfig(r=4, target_modules=["q_proj"])
    )
    model.save_pretrained(str(folder))
    return folder


def test_export_writes_loadable_bf16_weights_lineage_and_card(tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from finetune.export import export_adapter

    tiny = train_fixtures.build_tiny_llama(tmp_path / "tiny")
    adapter = _adapter(tiny, tmp_path / "adapter")
    from rag_app.guard.verdict import DEFAULT_MODEL, VerdictModel

    own = VerdictModel.load(DEFAULT_MODEL)  # the verdict the loop fitted for this adapter
    own.info = {"generator": "tiny", "adapter": adapter.name}
    own.save(adapter / "verdict-model.json")
    registry = Registry(tmp_path / "registry")
    for name in ("first", "second"):
        registry.register(name, adapter, base_model="tiny", base_hash="h", method="sft", data_hash="d")
    work = tmp_path / "iteration-2"
    (work / "sft-data").mkdir(parents=True)
    (work / "sft-data" / "data_card.json").write_text(json.dumps({"rows": {"train": 42}}), encoding="utf-8")
    registry.record_iteration({"parent": None, "candidate": "first", "promoted": True, "reason": "gain"})
    registry.record_iteration(
        {"parent": "first", "candidate": "second", "promoted": True, "reason": "more gain",
         "work_dir": str(work), "data_hashes": {"sft": "abc"}}
    )  # fmt: skip

    summary = export_adapter(registry, "second", tmp_path / "out")
    out = tmp_path / "out"
    assert summary["iterations"] == 2 and summary["weights_mb"] < 1
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and all(t.dtype == torch.bfloat16 for t in weights.values())
    lineage = json.loads((out / "lineage.json").read_text(encoding="utf-8"))
    assert [it["candidate"] for it in lineage["iterations"]] == ["first", "second"]
    assert "path" not in lineage["adapter"]  # no absolute path of this machine ships
    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    assert card["iterations"][1]["sft_rows"] == {"rows": {"train": 42}}
    shipped = VerdictModel.load(out / "verdict-model.json")  # re-addressed to the shipped folder's name
    assert shipped.applies_to("tiny", "out") and shipped.info["exported_from"] == "adapter"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(out))
    assert model.peft_config["default"].r == 4

    with pytest.raises(TrainingError, match="over the"):
        export_adapter(registry, "second", tmp_path / "too-big", max_mb=0.0001)


def test_adapters_export_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rag_app.cli import cli

    tiny = train_fixtures.build_tiny_llama(tmp_path / "tiny")
    registry = Registry(tmp_path / "data" / "adapters")
    registry.register("mine", _adapter(tiny, tmp_path / "adapter"), base_model="tiny", base_hash="h",
                      method="sft", data_hash="d")  # fmt: skip
    env = {"RAG_APP_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(cli, ["adapters", "export", "mine", "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["adapter"] == "mine" and (tmp_path / "out" / "lineage.json").is_file()
    missing = CliRunner().invoke(cli, ["adapters", "export", "nope", "--out", str(tmp_path / "x")], env=env)
    assert missing.exit_code != 0 and "no adapter named" in missing.output
