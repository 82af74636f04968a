"""JSON and JSON Lines, flattened to ``key.path: value`` lines that read well and embed well."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexes.loaders.common import SectionBuilder, read_text
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError


def load_json(path: Path) -> LoadedDocument:
    """A JSON file: one section per top-level key (object) or element (array)."""
    text, encoding = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(str(path), f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except RecursionError as exc:
        raise DocumentError(str(path), "not supported JSON (nested too deeply)") from exc
    builder = SectionBuilder()
    if isinstance(data, dict):
        for key, value in data.items():
            builder.text("\n".join(flatten(value, str(key))), lines=True)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            builder.text("\n".join(flatten(value, f"[{index}]")), lines=True)
    else:
        builder.text("\n".join(flatten(data, "")), lines=True)
    return LoadedDocument(str(path), "json", builder.sections, {"encoding": encoding})


def load_jsonl(path: Path) -> LoadedDocument:
    """A JSON Lines file: one section per record; lines that are not JSON are counted and skipped."""
    text, encoding = read_text(path)
    builder = SectionBuilder()
    records = invalid = 0
    first_error = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            invalid += 1
            first_error = first_error or f"line {number}: {getattr(exc, 'msg', exc)}"
            continue
        records += 1
        builder.text("\n".join(flatten(record, "")), lines=True)
    if invalid and not records:
        raise DocumentError(str(path), f"not valid JSON Lines ({first_error})")
    metadata: dict[str, Any] = {"encoding": encoding, "records": records}
    if invalid:
        metadata["invalid_lines"] = invalid
    return LoadedDocument(str(path), "json", builder.sections, metadata)


def flatten(value: Any, prefix: str) -> Iterator[str]:
    """``key.path: value`` lines for every scalar under ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from flatten(child, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from flatten(child, f"{prefix}[{index}]")
    elif value is not None and value != "":
        scalar = json.dumps(value) if isinstance(value, bool) else str(value)
        yield f"{prefix}: {scalar}" if prefix else scalar
