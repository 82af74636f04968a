"""Export a registered adapter as a self-contained folder: weights, lineage and data card.

What ships in ``rag_app/adapters/<name>`` (the retraining loop's promoted adapter) or what a user
copies to another machine: the PEFT files (LoRA weights stored as bfloat16, so a rank-16 adapter
stays a few MB), ``lineage.json`` (the registry record and every loop iteration that led to it:
parent, data hashes, eval run ids, the decision and its paired evidence) and ``data_card.json``
(the cards of the SFT rows and preference pairs it was trained on), and the adapter's own verdict
model when the loop fitted one (``verdict-model.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from finetune.config import TrainingError
from finetune.registry import Registry

WEIGHTS = "adapter_model.safetensors"


def lineage(registry: Registry, name: str) -> list[dict[str, Any]]:
    """The loop iterations behind ``name``, oldest first: the one that made it, the one that made
    its parent, and so on (iterations without a record, e.g. a hand-trained parent, end the chain)."""
    by_candidate = {r["candidate"]: r for r in registry.iterations()}
    chain: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None and current in by_candidate and len(chain) < 1000:
        record = by_candidate[current]
        chain.append(record)
        current = record.get("parent")
    return list(reversed(chain))


def _cards(iteration: dict[str, Any]) -> dict[str, Any]:
    work = Path(iteration.get("work_dir", ""))
    cards: dict[str, Any] = {}
    for key, folder in (("sft_rows", "sft-data"), ("preference_pairs", "pairs")):
        card = work / folder / "data_card.json"
        if card.is_file():
            cards[key] = json.loads(card.read_text(encoding="utf-8"))
    return cards


def _copy_verdict(source: Path, out: Path) -> None:
    """The adapter's own verdict (fitted by the loop), re-addressed to the exported folder's name
    (the adapter id the generator reports); a provisional one is not exported."""
    from rag_app.generation import VERDICT_FILE
    from rag_app.guard.verdict import VerdictModel

    if not (source / VERDICT_FILE).is_file():
        return
    model = VerdictModel.load(source / VERDICT_FILE)
    if model.info.get("provisional"):
        return
    model.info = {**model.info, "adapter": out.name, "exported_from": model.info.get("adapter")}
    model.save(out / VERDICT_FILE)


def export_adapter(registry: Registry, name: str, out: Path, *, max_mb: float = 20.0) -> dict[str, Any]:
    """Write ``name``'s folder to ``out`` (replaced); returns a summary. Refuses an adapter whose
    weights stay over ``max_mb`` in bfloat16."""
    import torch
    from safetensors.torch import load_file, save_file

    record = registry.require(name)
    source = Path(record.path)
    if not (source / WEIGHTS).is_file():
        raise TrainingError(f"{name}: no {WEIGHTS} in {source} (only LoRA adapters in safetensors export)")
    tensors = {
        key: value.to(torch.bfloat16) if value.is_floating_point() else value
        for key, value in load_file(str(source / WEIGHTS)).items()
    }
    size_mb = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    if size_mb > max_mb:
        raise TrainingError(
            f"{name}: {size_mb:.1f} MB of weights in bfloat16, over the {max_mb:g} MB limit: "
            "train with a smaller lora rank or fewer top layers"
        )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(source / "adapter_config.json", out / "adapter_config.json")
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    _copy_verdict(source, out)
    chain = lineage(registry, name)
    entry = record.to_dict()
    entry.pop("path", None)
    (out / "lineage.json").write_text(
        json.dumps({"adapter": entry, "iterations": chain}, indent=1, default=str) + "\n", encoding="utf-8"
    )
    card = {
        "adapter": name,
        "base_model": record.base_model,
        "base_hash": record.base_hash,
        "method": record.method,
        "stored_dtype": "bfloat16",
        "weights_mb": round(size_mb, 2),
        "iterations": [
            {
                "candidate": it["candidate"],
                "parent": it.get("parent"),
                "promoted": it.get("promoted"),
                "reason": it.get("reason"),
                "frozen_split": it.get("frozen_split"),
                "pool": {k: v for k, v in it.get("pool", {}).items() if k != "selected"}
                | {"selected": it.get("pool", {}).get("selected")},
                "data_hashes": it.get("data_hashes"),
                **_cards(it),
            }
            for it in chain
        ],
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=1, default=str) + "\n", encoding="utf-8")
    return {"adapter": name, "out": str(out), "weights_mb": round(size_mb, 2), "iterations": len(chain)}
