"""The continuous retraining loop: evaluate, select failures, retrain, gate, promote.

One iteration (:func:`run_iteration`), top to bottom:

1. split the dataset's questions once, by a hash of their ids, into a **frozen evaluation split**
   (recorded by the hash of its ids; never trained on) and a **training pool**;
2. evaluate the promoted adapter (or the base model) on the frozen split;
3. evaluate it on the training pool and select its failures (``eval select``: low F1, wrong
   citation, flagged, wrong abstention, replicate disagreement, plus thumbs-down feedback);
   questions without a known right answer go to the labelling queue (:mod:`eval.labelling`);
4. build grounded SFT rows and preference pairs from the labelled failures, with the current model's
   right pool answers replayed beside them and abstention targets capped (:mod:`eval.loop_data`);
5. train the candidate: SFT, then DPO on top of it (``method: sft-dpo``, the default) or SFT only,
   within the budget; then fit the candidate's own verdict on its answers to other pool questions
   (its verifier and confidence are calibrated per model: the packaged verdict is the bare
   model's), saved in its folder;
6. evaluate the candidate on the same frozen split with the same seed;
7. **promote only when** the paired test (``eval compare``'s :func:`eval.stats.compare_runs`)
   shows a significant gain on the primary metric and no significant regression on wrong answers
   shown, abstention accuracy or latency; otherwise keep the current adapter and say why;
8. record the iteration in the registry: parent, candidate, data hashes, run ids, the decision
   and its evidence.

Only one iteration runs at a time (an exclusive lock on ``<data_dir>/loop.lock``, released by the
OS when a process dies). Promotion is the last write of an iteration, so a crash at any earlier
point leaves the promoted adapter as it was; the next iteration starts in a new folder.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eval.gate import Decision, decide, gate_results
from eval.loop_train import replay_failures, train_candidate, training_data
from rag_app.errors import ConfigError

LOCK_NAME = "loop.lock"


class LoopSettings(BaseModel):
    """One iteration's settings (``rag-app loop run`` flags; saved with the iteration)."""

    model_config = ConfigDict(extra="forbid")

    index: Path
    """The index the questions are asked against."""
    dataset: str
    """What ``rag-app eval run --dataset`` takes: a JSONL file, squad-dev, a BEIR folder."""
    data_root: Path | None = None
    frozen_dataset: str | None = None
    """The frozen evaluation split as a dataset of its own (e.g. held-out articles); its ids are
    never in the pool. Unset: ``eval_share`` of ``dataset``'s ids, by hash."""
    eval_share: float = Field(0.3, gt=0.0, lt=1.0)
    """Share of the question ids frozen for evaluation (by a hash of the id: stable as data grows)."""
    eval_limit: int | None = Field(60, ge=2)
    """Frozen questions evaluated (a seeded, fixed draw from the frozen split)."""
    pool_limit: int | None = Field(120, ge=1)
    """Training-pool questions answered to find failures."""
    select_n: int = Field(60, ge=1)
    """Failures kept for training."""
    calibration_limit: int | None = Field(48, ge=0)
    """Pool questions, neither answered for selection nor trained on, that the candidate answers
    to fit its own verdict (:func:`eval.calibrate.fit_adapter_verdict`) before the frozen
    evaluation; 0: none (the candidate gets the lexical verdict)."""
    replay: bool = True
    """Train on the failures of earlier iterations too (their files, where they still exist), so a
    new candidate does not forget what the promoted one learnt."""
    replay_share: float = Field(0.5, ge=0.0, le=2.0)
    """Rehearsal ("anchor" rows): pool questions the current model answered right (F1 >= 0.8 or the
    gold inside, citing a passage that holds it) are trained on its own answer, at most this share of
    the failure rows (as many as exist), so the candidate does not drift from what already works;
    0: none (:mod:`eval.loop_data`)."""
    max_not_found_share: float = Field(0.1, ge=0.0, lt=0.5)
    """At most this share of the SFT rows has the abstention sentence as target, and only where the
    sources lack the answer (a question labelled unanswerable, or a replayed question shown without
    its passage); answerable failures never do. Also the share of failure questions shown without
    their passage in the preference pairs."""
    halueval: Path | None = None
    """HaluEval QA pairs (``qa_pairs.jsonl``) to add to the preference pairs (DPO)."""
    halueval_pairs: tuple[int, int] = (0, 4999)
    """Inclusive range of HaluEval ``pair_id`` used."""
    pairs_per_type: int | None = Field(500, ge=1)
    """At most this many preference pairs of each type (a seeded sample)."""
    method: Literal["sft", "sft-dpo"] = "sft-dpo"
    budget_minutes: float = Field(30.0, gt=0)
    """Training time for the candidate (SFT and DPO share it)."""
    primary_metric: str = "f1"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    seed: int = 0
    lora_rank: int = Field(8, ge=1)
    top_layers: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    work_dir: Path | None = None
    """Where each iteration writes its data and runs (default: ``<data_dir>/loop``)."""
    track: bool = False
    """Log the iteration to MLflow (``pip install 'rag-app[track]'``; :mod:`eval.tracking`)."""
    tracking_uri: str | None = None
    """With ``track``: an MLflow server; unset: a local ``<data_dir>/mlruns`` folder."""


# -- one at a time -------------------------------------------------------------------------------
@contextmanager
def loop_lock(data_dir: Path) -> Iterator[None]:
    """Hold the loop's exclusive lock, or fail at once naming who holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"a loop iteration is already running ({holder}); wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {_now()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock (and so does the OS when the process dies)


# -- the frozen split ----------------------------------------------------------------------------
def split_ids(ids: Sequence[str], eval_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Frozen evaluation ids and training-pool ids, by a seeded hash of each id: adding questions
    never moves an old one to the other side."""
    frozen: list[str] = []
    pool: list[str] = []
    for sample_id in ids:
        bucket = int(hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (frozen if bucket < eval_share else pool).append(sample_id)
    return frozen, pool


def ids_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


# -- one iteration -------------------------------------------------------------------------------
Trainer = Callable[[Path, Path, str | None, Any, LoopSettings], str]
"""``(sft_dir, pairs_dir, parent adapter, settings, loop) -> registered candidate name``."""
OpenRag = Callable[[Any, Path], Any]
"""``(settings with generator.adapter set, index) -> RAG``: how the loop opens the app to evaluate."""


def open_rag(settings: Any, index: Path) -> Any:
    """The app over ``index`` with ``settings`` (the default :data:`OpenRag`)."""
    from rag_app.rag import RAG

    return RAG.open(index, settings)


def run_iteration(
    settings: Any,
    loop: LoopSettings,
    *,
    train: Trainer | None = None,
    opener: OpenRag | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One iteration (see the module doc); returns its record (also stored in the registry).
    ``say`` gets a line at each stage and every tenth of an evaluation (the CLI prints them)."""
    with loop_lock(Path(settings.data_dir)):
        return _iteration(settings, loop, train or train_candidate, opener or open_rag, say or _quiet)


def _quiet(line: str) -> None:
    pass


def _iteration(
    settings: Any, loop: LoopSettings, train: Trainer, opener: OpenRag, say: Callable[[str], None]
) -> dict[str, Any]:
    from eval.datasets import EvalDataset, load_dataset
    from eval.runs import RunStore
    from eval.select import select, write_selection
    from eval.triggers import snapshot
    from finetune.registry import Registry
    from rag_app.feedback import FeedbackStore

    started = time.perf_counter()
    stage: dict[str, float] = {}
    watched = snapshot(settings, loop.index)
    registry = Registry.from_settings(settings)
    parent = registry.promoted()
    work = (loop.work_dir or Path(settings.data_dir) / "loop") / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(loop.dataset, loop.data_root)
    by_id = {s.id: s for s in dataset.samples}
    if loop.frozen_dataset:
        frozen = load_dataset(loop.frozen_dataset, loop.data_root)
        held = {s.id for s in frozen.samples}
        pool_ids = [s.id for s in dataset.samples if s.id not in held]
    else:
        frozen_ids, pool_ids = split_ids(list(by_id), loop.eval_share, loop.seed)
        frozen = EvalDataset(dataset.name, [by_id[i] for i in frozen_ids], dataset.documents, dataset.origin)
    frozen = frozen.head(loop.eval_limit, loop.seed)
    pool_all = EvalDataset(dataset.name, [by_id[i] for i in pool_ids], dataset.documents, dataset.origin)
    draw = loop.seed + len(registry.iterations())  # each iteration answers another draw of the pool
    pool = pool_all.head(loop.pool_limit, draw)
    if len(frozen.samples) < 2 or not pool.samples:
        raise ConfigError(
            f"{loop.dataset}: {len(frozen.samples)} frozen and {len(pool.samples)} pool questions; "
            "the loop needs at least 2 frozen and 1 pool question (more questions, or another eval_share)"
        )

    with RunStore.for_settings(settings) as store:
        t0 = time.perf_counter()
        current = parent.path if parent else None
        who = parent.name if parent else "the base model"
        frozen_hash = ids_hash([s.id for s in frozen.samples])
        earlier = _earlier_run(registry.iterations(), parent.name if parent else None, frozen_hash, loop.seed)
        if earlier is not None:  # the promoted adapter's own frozen run, from the iteration that promoted it
            say(f"{who}: reusing its frozen-split run {earlier} (same questions, same seed)")
            base_run = store.get(earlier)
        else:
            say(f"evaluating {who} on the {len(frozen.samples)} frozen questions")
            base_run = _evaluate(opener, settings, loop, current, frozen, store, "loop-base", say)
        say(f"answering {len(pool.samples)} training-pool questions to find failures")
        pool_run = _evaluate(opener, settings, loop, current, pool, store, "loop-pool", say)
        stage["evaluate_current_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        feedback = FeedbackStore(settings.data_dir)
        try:
            candidates = select(
                pool_run, {s.id: s for s in pool.samples}, loop.select_n, feedback=feedback,
                index_dir=str(loop.index),
            )  # fmt: skip
        finally:
            feedback.close()
        selection = write_selection(candidates, work / "failures.jsonl")
        from eval.labelling import LabellingQueue, training_rows

        with LabellingQueue(settings.data_dir) as queue:
            queued = queue.add([c for c in candidates if not c.answer], index_dir=str(loop.index))
            labelled = training_rows(queue.labelled(str(loop.index)))
        if labelled:  # questions people labelled since: they join this iteration's training rows
            with (work / "failures.jsonl").open("a", encoding="utf-8") as handle:
                for row in labelled:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        selection["labelled_by_people"] = len(labelled)
        replayed = replay_failures(registry.iterations(), work / "failures.jsonl") if loop.replay else []
        selection["replayed_from"] = replayed
        sft_dir, pairs_dir, data_hashes, sft_rows = training_data(
            work, loop, pool_run.results, {s.id: s for s in pool.samples}
        )
        trained_on = _ids(work / "failures.jsonl") | {s.id for s in pool.samples}
        calibration = EvalDataset(
            dataset.name,
            [s for s in pool_all.samples if s.id not in trained_on],
            dataset.documents,
            dataset.origin,
        ).head(loop.calibration_limit or 0, draw + 1)
        stage["select_and_data_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(
            f"{selection.get('selected', '?')} failures selected; training the candidate ({loop.method}, "
            f"{loop.budget_minutes:g} min)"
        )
        name = train(sft_dir, pairs_dir, parent.name if parent else None, settings, loop)
        stage["train_s"] = time.perf_counter() - t0

        candidate = registry.require(name)
        t0 = time.perf_counter()
        verdict = _calibrate(
            opener, settings, loop, Path(candidate.path), calibration.samples, say, work / "calibration.jsonl"
        )
        stage["calibrate_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(f"evaluating the candidate {name} on the same frozen questions")
        cand_run = _evaluate(opener, settings, loop, candidate.path, frozen, store, "loop-candidate", say)
        stage["evaluate_candidate_s"] = time.perf_counter() - t0

    samples = {s.id: s for s in frozen.samples}
    decision = decide(
        gate_results(base_run.results, samples, loop.primary_metric),
        gate_results(cand_run.results, samples, loop.primary_metric),
        loop.primary_metric,
        loop.alpha,
        loop.seed,
    )
    stage["total_s"] = time.perf_counter() - started
    record = {
        "started": _now(),
        "parent": parent.name if parent else None,
        "candidate": name,
        "method": loop.method,
        "frozen_split": {
            "questions": len(frozen.samples),
            "ids_hash": ids_hash([s.id for s in frozen.samples]),
        },
        "pool": {"questions": len(pool.samples), "selected": selection, "queued_for_labels": queued},
        "data_hashes": data_hashes,
        "sft_rows": sft_rows,
        "runs": {"base": base_run.id, "pool": pool_run.id, "candidate": cand_run.id},
        "base_run_reused": earlier is not None,
        "candidate_verdict": verdict,
        "promoted": decision.promote,
        "reason": decision.reason,
        "evidence": decision.evidence,
        "stages": {k: round(v, 1) for k, v in stage.items()},
        "snapshot": watched,
        "settings": loop.model_dump(mode="json"),
        "work_dir": str(work),
    }
    if loop.track:
        from eval.tracking import log_iteration

        record["mlflow_run"] = log_iteration(
            record,
            data_dir=Path(settings.data_dir),
            tracking_uri=loop.tracking_uri,
            adapter_dir=candidate.path,
        )
    say(f"{'PROMOTED' if decision.promote else 'kept the current adapter'}: {decision.reason}")
    if decision.promote:
        registry.promote(name)  # the last write: a crash before it leaves the current adapter promoted
    registry.record_iteration(record)
    return record


def _evaluate(
    opener: OpenRag,
    settings: Any,
    loop: LoopSettings,
    adapter: Path | None,
    data: Any,
    store: Any,
    name: str,
    say: Callable[[str], None] = _quiet,
) -> Any:
    """One eval run of ``adapter`` (None: the base model) over ``data``, answer metrics only."""
    from eval.runner import RunOptions, every_tenth, run_evaluation

    run_settings = settings.model_copy(deep=True)
    run_settings.generator.adapter = str(adapter) if adapter else "none"
    if loop.threads:
        run_settings.generator.threads = loop.threads
    options = RunOptions(seed=loop.seed, replicates=1, ragas=False, judge=False, perplexity=False, name=name)
    rag = opener(run_settings, loop.index)
    try:
        return run_evaluation(rag, data, options, store=store, progress=every_tenth(say, prefix="  "))
    finally:
        rag.close()


def _calibrate(
    opener: OpenRag,
    settings: Any,
    loop: LoopSettings,
    adapter: Path,
    samples: Sequence[Any],
    say: Callable[[str], None],
    rows_out: Path | None = None,
) -> dict[str, Any]:
    """Fit the candidate's own verdict on ``samples`` (none: it keeps the lexical verdict)."""
    if not samples:
        return {"fitted": False, "reason": "no pool questions left to calibrate on (calibration_limit 0?)"}
    from eval.calibrate import fit_adapter_verdict

    say(f"fitting the candidate's verdict on {len(samples)} other pool questions")
    run_settings = settings.model_copy(deep=True)
    if loop.threads:
        run_settings.generator.threads = loop.threads
    result = fit_adapter_verdict(
        lambda s: opener(s, loop.index), run_settings, adapter, samples, say, rows_out=rows_out
    )
    if result["fitted"]:
        say(
            f"  verdict fitted on {result['rows']} answers: AUROC {result['fit_auroc']}, "
            f"threshold {result['threshold']}"
        )
    else:
        fallback = "the packaged weights" if result.get("path") else "the lexical one"
        say(f"  no verdict fitted ({result['reason']}): the candidate gets {fallback}")
    return result


def _ids(path: Path) -> set[str]:
    """The ``id`` of every row of a JSONL file (none when it is missing)."""
    if not path.is_file():
        return set()
    return {
        str(json.loads(line).get("id"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }


def _earlier_run(
    iterations: Sequence[dict[str, Any]], adapter: str | None, frozen: str, seed: int
) -> str | None:
    """The frozen-split run of ``adapter`` made by an earlier iteration over the same questions
    with the same seed (a promoted candidate's), or ``None``."""
    for record in reversed(iterations):
        same = record.get("frozen_split", {}).get("ids_hash") == frozen
        if same and record.get("settings", {}).get("seed") == seed:
            if adapter is not None and record.get("candidate") == adapter:
                return str(record["runs"]["candidate"])
            if record.get("parent") == adapter:
                return str(record["runs"]["base"])
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def history_rows(settings: Any) -> list[dict[str, Any]]:
    """The recorded iterations, oldest first (``rag-app loop history``)."""
    from finetune.registry import Registry

    return Registry.from_settings(settings).iterations()


__all__ = [
    "Decision",
    "LoopSettings",
    "decide",
    "gate_results",
    "history_rows",
    "loop_lock",
    "run_iteration",
    "split_ids",
    "train_candidate",
]
