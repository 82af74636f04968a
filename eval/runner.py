"""One evaluation run: ask every question through the app, score it, store it, report it.

    dataset = load_dataset("squad-dev").head(300, seed=0)
    record = run_evaluation(rag, dataset, RunOptions(replicates=2), store=RunStore.for_settings(s))

Per question the app answers through :meth:`RAG.ask` (the same path users get), and a separate
:meth:`RAG.search` of ``max(k, 10)`` passages gives the ranking that retrieval metrics score.
Replicate 1 decodes with the configured temperature (greedy by default); replicates 2.. sample
at ``eval.replicate_temperature``. Every question of every replicate is seeded from
``(seed, replicate, question id)``, so a rerun gives the same answers in any order.

Metric names: ``retrieval.*`` (recall@k, MRR, nDCG@10), ``answer.*`` (EM, F1, BLEU, ROUGE-L,
semantic similarity, abstained), ``guard.*`` (grounding, flagged), ``ragas.*``
(:mod:`eval.ragas_metrics`); the generator's perplexity on held-out reference passages is a
run-level figure (``generator.perplexity``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval import answer_metrics as am
from eval.datasets import EvalDataset
from eval.hallucination import hallucination_report
from eval.retrieval_metrics import ranked_keys, retrieval_scores
from eval.runs import RunStore, new_run_id
from eval.stats import summarize_all
from eval.types import EvalSample, FlaggedSentence, MetricSummary, Passage, RunRecord, SampleResult
from rag_app.prompting import strip_citations

RETRIEVAL_DEPTH = 10
PERPLEXITY_TEXTS = 20
PACKAGES = (
    "rag-app",
    "numpy",
    "faiss-cpu",
    "onnxruntime",
    "torch",
    "transformers",
    "peft",
    "ragas",
    "sacrebleu",
    "rouge-score",
    "bm25s",
)
SECRET_KEYS = ("api_key", "judge_api_key")

Progress = Callable[[int, int, str], None]
"""``(done, total, what)`` after each answer."""


def every_tenth(say: Callable[[str], None], prefix: str = "") -> Progress:
    """A :data:`Progress` that tells ``say`` a line at every tenth of the run and at its end:
    ``[done/total] N s, about M min left`` (for logs and CI, where a live line cannot redraw)."""
    started = time.perf_counter()

    def progress(done: int, total: int, what: str) -> None:
        if done == total or done % max(1, total // 10) == 0:
            elapsed = time.perf_counter() - started
            left = elapsed / done * (total - done)
            say(f"{prefix}[{done}/{total}] {elapsed:.0f} s, about {left / 60:.1f} min left")

    return progress


@dataclass
class RunOptions:
    """How to run: how many questions and replicates, which extras, where to write the report."""

    limit: int | None = None
    """Questions drawn (seeded) from the dataset; None: all."""
    replicates: int | None = None
    """None: ``eval.replicates``."""
    seed: int | None = None
    """None: ``eval.seed``."""
    k: int | None = None
    """Passages given to the generator; None: ``retrieval.k``."""
    ragas: bool = True
    judge: bool | None = None
    """RAGAS LLM metrics: None runs them when ``eval.judge_base_url`` is set."""
    perplexity: bool = False
    probes: Sequence[str] = ()
    """``bias``, ``robustness``, ``injection``."""
    probe_questions: int = 20
    report_dir: Path | None = None
    name: str = ""
    """A label stored with the run."""
    command: str = ""
    extra_manifest: dict[str, Any] = field(default_factory=dict)


# -- the run manifest ----------------------------------------------------------------------------------
def corpus_hash(rag: Any) -> str:
    """sha256 over the indexed documents' (source, content hash), sorted: the corpus's identity."""
    digest = hashlib.sha256()
    for doc in sorted(rag.documents(), key=lambda d: d.source):
        digest.update(f"{doc.source}\t{doc.content_hash}\n".encode())
    return digest.hexdigest()


def local_judge(rag: Any) -> Any:
    """The in-process RAGAS judge: the generator's base model, without an adapter.

    The packaged reader adapter teaches short cited answers, which is the opposite of the long
    JSON replies RAGAS's prompts ask for; the base model writes them.
    """
    from rag_app.generation import create_generator

    if getattr(rag.generator, "adapter_id", None) is None:  # already the bare model
        return rag.generator
    settings = rag.settings.model_copy(deep=True)
    settings.generator.adapter = "none"
    return create_generator(settings)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def public_settings(settings: Any) -> dict[str, Any]:
    """The settings as JSON, secrets replaced by ``***``."""
    data = settings.model_dump(mode="json")

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v else scrub(v)) for k, v in node.items()}
        return node

    return scrub(data)


def build_manifest(
    rag: Any, dataset: EvalDataset, options: RunOptions, seed: int, replicates: int
) -> dict[str, Any]:
    settings = rag.settings
    generator = rag.generator
    return {
        "name": options.name,
        "command": options.command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "dataset": {
            "name": dataset.name,
            "origin": dataset.origin,
            "questions": len(dataset.samples),
            "fingerprint": dataset.fingerprint,
            "limit": options.limit,
        },
        "index": {
            "folder": str(rag.index_dir),
            "corpus_hash": corpus_hash(rag),
            "manifest": asdict(rag.store.manifest),
        },
        "models": {
            "embedder": rag.store.manifest.embedding_model_id,
            "generator": getattr(generator, "model_id", type(generator).__name__),
            "adapter": getattr(generator, "adapter_id", None),
            "guard": str(settings.guard.model_path or "packaged") if settings.guard.enabled else None,
            "judge": (settings.eval.judge_model or None)
            if settings.eval.judge_base_url
            else (f"local {settings.generator.model} (no adapter)" if settings.eval.judge_local else None),
        },
        "seed": seed,
        "replicates": replicates,
        "temperatures": [settings.generator.temperature]
        + [settings.eval.replicate_temperature] * (replicates - 1),
        "k": options.k or settings.retrieval.k,
        "probes": list(options.probes),
        "settings": public_settings(settings),
        "packages": package_versions(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        **options.extra_manifest,
    }


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# -- answering -----------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when loaded) torch: sampling replicates repeat exactly."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def question_seed(seed: int, replicate: int, sample_id: str) -> int:
    return zlib.crc32(f"{seed}:{replicate}:{sample_id}".encode())


def to_result(sample: EvalSample, replicate: int, answer: Any) -> SampleResult:
    """An :class:`Answer` as a :class:`SampleResult` (passages, grounding, flagged sentences)."""
    # Citation and SentenceSupport carry every field of their stored counterparts (and a few more)
    passages = [Passage.from_dict(asdict(c)) for c in answer.citations]
    sentences = []
    grounding = None
    if answer.grounding is not None:
        grounding = float(answer.grounding.score)
        sentences = [
            FlaggedSentence.from_dict(asdict(s) | {"score": float(s.score)})
            for s in answer.grounding.sentences
        ]
    return SampleResult(
        sample_id=sample.id,
        replicate=replicate,
        question=sample.question,
        answer=answer.text,
        abstained=answer.abstained,
        passages=passages,
        grounding=grounding,
        sentences=sentences,
        timings={k: round(float(v), 4) for k, v in answer.timings.items()},
        usage=dict(answer.usage),
        qtype=sample.qtype,
    )


def answer_scores(sample: EvalSample, result: SampleResult) -> dict[str, float | None]:
    """EM, F1, BLEU, ROUGE-L (against the reference answers), abstention, guard figures.

    An abstention scores 0 on the answer metrics when the sample has a reference answer: the
    reference says the documents answer it. Samples without references get no answer metrics.
    """
    scores: dict[str, float | None] = {"answer.abstained": float(result.abstained)}
    if sample.answers:
        text = strip_citations(result.answer)
        if result.abstained or result.error:
            scores.update({"answer.em": 0.0, "answer.f1": 0.0, "answer.bleu": 0.0, "answer.rouge_l": 0.0})
        else:
            scores["answer.em"] = am.best_over_truths(am.exact_match, text, sample.answers)
            scores["answer.f1"] = am.best_over_truths(am.token_f1, text, sample.answers)
            scores["answer.bleu"] = am.bleu(text, sample.answers)
            scores["answer.rouge_l"] = am.rouge_l(text, sample.answers)
    if not result.abstained and result.grounding is not None:
        scores["guard.grounding"] = result.grounding
        scores["guard.flagged"] = float(bool(result.flagged))
    return scores


def retrieval_for(rag: Any, sample: EvalSample, k: int) -> dict[str, float]:
    """recall@1/5/10, MRR and nDCG@10 of the app's ranking (empty without references)."""
    if not sample.relevant and not sample.contexts:
        return {}
    hits = rag.search(sample.question, k=max(k, RETRIEVAL_DEPTH))
    keys, rels = ranked_keys([(h.source, h.chunk_id, h.text) for h in hits], sample.relevant, sample.contexts)
    return retrieval_scores(keys, rels)


def _semantic(embedder: Any, results: list[SampleResult], samples: dict[str, EvalSample]) -> None:
    scored = [r for r in results if samples[r.sample_id].answers and not r.abstained and not r.error]
    values = am.semantic_similarity(
        embedder, [strip_citations(r.answer) for r in scored], [samples[r.sample_id].answers for r in scored]
    )
    for result, value in zip(scored, values, strict=True):
        result.metrics["answer.semantic_similarity"] = value
    for result in results:
        if samples[result.sample_id].answers and (result.abstained or result.error):
            result.metrics["answer.semantic_similarity"] = 0.0


def generator_perplexity(rag: Any, dataset: EvalDataset, seed: int) -> MetricSummary | None:
    """Perplexity of a local transformers generator on held-out reference passages (or corpus
    documents); None for a remote generator, which exposes no token probabilities."""
    generator = rag.generator
    loaded = getattr(generator, "model_and_tokenizer", None)
    if loaded is None:
        return None
    texts = list(dict.fromkeys(c for s in dataset.samples for c in s.contexts))
    texts = texts or [d.text for d in dataset.documents]
    if not texts:
        return None
    rng = random.Random(seed)
    picked = rng.sample(texts, min(PERPLEXITY_TEXTS, len(texts)))
    model, tokenizer = loaded()
    figures = am.perplexity(model, tokenizer, picked)
    value = figures["perplexity"]
    finite = value if value == value and value != float("inf") else None
    return MetricSummary(
        "generator.perplexity", finite, int(figures["tokens"]), 0 if finite is not None else 1
    )


def run_evaluation(
    rag: Any,
    dataset: EvalDataset,
    options: RunOptions | None = None,
    *,
    store: RunStore | None = None,
    progress: Progress | None = None,
) -> RunRecord:
    """Answer, score, summarise, store and report; returns the finished record.

    With a ``store`` every answer is saved as it is made, so an interrupted run keeps its rows.
    """
    options = options or RunOptions()
    settings = rag.settings
    seed = settings.eval.seed if options.seed is None else options.seed
    replicates = options.replicates or settings.eval.replicates
    data = dataset.head(options.limit, seed)
    samples = {s.id: s for s in data.samples}
    k = options.k or settings.retrieval.k
    run_id = new_run_id()
    manifest = build_manifest(rag, data, options, seed, replicates)
    if store is not None:
        store.start(run_id, data.name, manifest, data.samples)
    started = time.perf_counter()
    results: list[SampleResult] = []
    base_temperature = settings.generator.temperature
    total = len(data.samples) * replicates
    try:
        retrieval = {s.id: retrieval_for(rag, s, k) for s in data.samples}
        for replicate in range(replicates):
            settings.generator.temperature = (
                base_temperature if replicate == 0 else settings.eval.replicate_temperature
            )
            for sample in data.samples:
                seed_everything(question_seed(seed, replicate, sample.id))
                t0 = time.perf_counter()
                try:
                    result = to_result(sample, replicate, rag.ask(sample.question, k=k))
                except Exception as exc:  # one failed question is recorded, not fatal
                    result = SampleResult(sample.id, replicate, sample.question, "", qtype=sample.qtype)
                    result.error = f"{type(exc).__name__}: {exc}"
                result.timings["total"] = round(time.perf_counter() - t0, 4)
                result.metrics.update(retrieval[sample.id])
                result.metrics.update(answer_scores(sample, result))
                results.append(result)
                if store is not None:
                    store.add_result(run_id, result)
                if progress is not None:
                    progress(len(results), total, sample.question)
    except KeyboardInterrupt:
        if store is not None:
            store.mark(run_id, "interrupted")
        raise
    finally:
        settings.generator.temperature = base_temperature
    phases = {"answering": time.perf_counter() - started}

    mark = time.perf_counter()
    _semantic(rag.embedder, results, samples)
    if options.ragas:
        from eval.ragas_metrics import score_ragas

        outcome = score_ragas(
            results,
            samples,
            embedder=rag.embedder,
            guard=rag.guard,
            eval_settings=settings.eval,
            llm_metrics=options.judge,
            judge_generator=local_judge(rag)
            if settings.eval.judge_local and not settings.eval.judge_base_url
            else None,
        )
        manifest["ragas"] = outcome.to_dict() if hasattr(outcome, "to_dict") else asdict(outcome)

    summary = summarize_all(results, resamples=settings.eval.bootstrap_samples, seed=seed)
    hallucination = hallucination_report(results, samples)
    phases["scoring"] = time.perf_counter() - mark
    if options.perplexity:
        mark = time.perf_counter()
        ppl = generator_perplexity(rag, data, seed)
        if ppl is not None:
            summary[ppl.name] = ppl
        phases["perplexity"] = time.perf_counter() - mark

    probes: dict[str, Any] = {}
    if options.probes:
        from eval.probes import run_probes

        mark = time.perf_counter()
        probes = run_probes(
            rag, data.samples, kinds=tuple(options.probes), n=options.probe_questions, seed=seed
        )
        phases["probes"] = time.perf_counter() - mark

    record = RunRecord(
        id=run_id,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        dataset=data.name,
        manifest=manifest,
        summary=summary,
        results=results,
        hallucination=hallucination,
        probes=probes,
        wall_seconds=round(time.perf_counter() - started, 2),
    )
    record.manifest["phase_seconds"] = {name: round(value, 2) for name, value in phases.items()}
    # answering and scoring only: probes and perplexity are fixed costs, reported per phase
    per_answer = (phases["answering"] + phases["scoring"]) / max(len(results), 1)
    record.manifest["seconds_per_100_questions"] = round(per_answer * 100, 1)
    if store is not None:
        store.finish(record)
    if options.report_dir is not None:
        write_run_report(record, options.report_dir, store)
    return record


def write_run_report(record: RunRecord, folder: Path, store: RunStore | None = None) -> dict[str, Path]:
    """HTML, JSON and Markdown of ``record`` in ``folder``, with the history of its dataset's runs."""
    from eval.report import write_report

    history = store.history(record.dataset) if store is not None else None
    return write_report(record, Path(folder), history=history)


def results_digest(results: Sequence[SampleResult]) -> str:
    """sha256 of the answers and metric values: equal digests mean identical runs."""
    payload = [
        (r.sample_id, r.replicate, r.answer, sorted((k, v) for k, v in r.metrics.items())) for r in results
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
