"""When the retraining loop should run again: new thumbs-down feedback, new documents, or time.

:func:`snapshot` reads what the loop watches (thumbs-down count, the index's document count,
the time); each iteration's record keeps the snapshot it started from, and :func:`due` compares
the current one with it. ``rag-app loop watch`` polls and runs an iteration when one is due; the
loop's lock keeps a second one from starting. Run it as a service, or from cron with ``--once``:

    */30 * * * *  cd /srv/rag && rag-app loop watch --once --index my-index --dataset qa.jsonl
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Triggers:
    """Start an iteration when any of these is reached since the last one (None: not watched)."""

    thumbs_down: int | None = 20
    new_documents: int | None = 50
    every_hours: float | None = None


def snapshot(settings: Any, index: Path) -> dict[str, Any]:
    """What the triggers compare: thumbs-down so far, documents in the index, the time."""
    from rag_app.feedback import FeedbackStore
    from rag_app.store.index import IndexStore

    feedback = FeedbackStore(settings.data_dir)
    try:
        down = feedback.counts()["down"]
    finally:
        feedback.close()
    store = IndexStore.open(index, use_gpu="never")
    try:
        documents = int(store.docstore.counts()[0])
    finally:
        store.close()
    return {"thumbs_down": int(down), "documents": documents, "at": dt.datetime.now(dt.UTC).isoformat()}


def due(now: dict[str, Any], last: dict[str, Any] | None, triggers: Triggers) -> str | None:
    """Why an iteration is due (a sentence), or None. With no earlier iteration, one is due."""
    if last is None:
        return "no iteration has run yet"
    if triggers.thumbs_down is not None and now["thumbs_down"] - last["thumbs_down"] >= triggers.thumbs_down:
        return f"{now['thumbs_down'] - last['thumbs_down']} new thumbs-down answers"
    if triggers.new_documents is not None and now["documents"] - last["documents"] >= triggers.new_documents:
        return f"{now['documents'] - last['documents']} new documents in the index"
    if triggers.every_hours is not None:
        hours = (
            dt.datetime.fromisoformat(now["at"]) - dt.datetime.fromisoformat(last["at"])
        ).total_seconds() / 3600
        if hours >= triggers.every_hours:
            return f"{hours:.1f} h since the last iteration"
    return None


def last_snapshot(iterations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The snapshot the latest recorded iteration started from."""
    for record in reversed(iterations):
        if record.get("snapshot"):
            return dict(record["snapshot"])
    return None
