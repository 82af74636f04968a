"""The rows of a preference data set: their shape, keys, checks and caps, and reading them back.

A row is ``{"prompt": messages, "chosen": [assistant message], "rejected": [assistant message],
"meta": {...}}`` (:func:`make_pair`); :func:`read_pairs` gives the trainers their columns.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune.config import TrainingError
from finetune.data import digest


def make_pair(
    prompt: list[Any], chosen: str, rejected: str, kind: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """One preference row: ``chosen`` over ``rejected`` (one assistant message each) for ``prompt``;
    ``kind`` (a :data:`finetune.preferences.PAIR_TYPES` name) goes into ``meta["type"]``."""
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "meta": {**meta, "type": kind},
    }


def prompt_key(row: dict[str, Any]) -> str:
    """The same prompt messages: the same key (one question asked once)."""
    return digest(json.dumps(row["prompt"]))


def pair_key(row: dict[str, Any]) -> str:
    """The same prompt, chosen and rejected texts: one row."""
    return digest(json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True))


def pair_group(row: dict[str, Any]) -> str:
    """The source document of a row (a SQuAD article, a HaluEval passage, a feedback question)."""
    return str(row["meta"]["group"])


def check_pairs(rows: Sequence[dict[str, Any]], where: str) -> None:
    """Refuse rows a preference trainer would learn nothing (or nonsense) from, naming them."""
    problems = []
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("prompt", "chosen", "rejected") if not row.get(k)]
        if missing:
            problems.append(f"row {n}: no {', '.join(missing)}")
            continue
        prompt = row["prompt"]
        text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)
        if not text.strip():
            problems.append(f"row {n}: empty prompt")
        if _text(row["chosen"]).strip() == _text(row["rejected"]).strip():
            problems.append(f"row {n}: chosen and rejected are identical")
        if len(problems) >= 5:
            break
    if problems:
        raise TrainingError(f"{where}: {'; '.join(problems)} (fix or drop these rows; nothing was trained)")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return " ".join(str(m.get("content", "")) for m in value)


def balance(rows: list[dict[str, Any]], max_per_type: int | None, seed: int) -> list[dict[str, Any]]:
    """At most ``max_per_type`` rows of each negative type (a seeded sample), order kept."""
    if max_per_type is None:
        return rows
    rng = random.Random(seed)
    by_type: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_type.setdefault(row["meta"]["type"], []).append(i)
    keep: set[int] = set()
    for positions in by_type.values():
        keep.update(positions if len(positions) <= max_per_type else rng.sample(positions, max_per_type))
    return [row for i, row in enumerate(rows) if i in keep]


def read_pairs(path: Path, limit: int | None = None, *, with_meta: bool = False) -> list[dict[str, Any]]:
    """Preference rows of a JSONL file, checked (:func:`check_pairs`): only the trainer's columns,
    or whole rows (``meta`` too) with ``with_meta``."""
    from finetune.data import read_rows

    rows = read_rows(path, limit)
    if not rows:
        raise TrainingError(f"{path} has no rows")
    check_pairs(rows, str(path))
    if with_meta:
        return rows
    return [trainer_columns(r) for r in rows]


def read_pair_splits(
    data: Any, *, with_meta: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train rows and the validation rows (none when the file is unset or absent) of ``data``
    (:class:`finetune.config.PreferenceData`)."""
    train = read_pairs(data.train, data.max_train_rows, with_meta=with_meta)
    validation: list[dict[str, Any]] = []
    if data.validation is not None and data.validation.is_file():
        validation = read_pairs(data.validation, data.max_validation_rows, with_meta=with_meta)
    return train, validation


def trainer_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The columns TRL's preference trainers read."""
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
