"""``rag-app eval``: run evaluations, print and compare stored runs, select retraining data.

The main ``rag-app`` group loads this module only when ``eval`` is invoked (``import rag_app``
stays light and ``rag_app`` never imports ``eval`` at module level).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rag_app.cli_common import cli_settings, print_json

PROBES = ("bias", "robustness", "injection")


def _store(ctx: click.Context) -> Any:
    from eval.runs import RunStore

    return RunStore.for_settings(cli_settings(ctx))


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.4f}"


def _summary_lines(record: Any) -> list[str]:
    lines = []
    for name, m in sorted(record.summary.items()):
        ci = f" [{m.ci_low:.4f}, {m.ci_high:.4f}]" if m.ci_low is not None and m.ci_high is not None else ""
        failed = f", failed {m.failed}" if m.failed else ""
        shown = "failed" if m.mean is None else f"{m.mean:.4f}"
        lines.append(f"  {name:32} {shown}{ci} (n {m.n}{failed})")
    return lines


@click.group("eval")
def eval_group() -> None:
    """Evaluate an index and its generator: metrics, hallucination report, probes, retraining data."""


@eval_group.command("run")
@click.option("--dataset", required=True, help="JSONL file, BEIR folder, squad-dev, scifact, or 'generate'.")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for report.html/.json/.md (default: ui.reports_dir/RUN_ID).",
)
@click.option("--limit", "-n", type=click.IntRange(1), default=None, help="Questions drawn (seeded).")
@click.option("--replicates", type=click.IntRange(1, 50), default=None, help="Answers per question.")
@click.option("--seed", type=int, default=None, help="Seed (default eval.seed).")
@click.option("-k", "k", type=click.IntRange(1, 100), default=None, help="Passages given to the generator.")
@click.option("--probes", default="", help=f"Comma-separated: {', '.join(PROBES)} (or 'all').")
@click.option("--probe-questions", type=click.IntRange(1), default=20, show_default=True)
@click.option("--ragas/--no-ragas", default=True, show_default=True, help="RAGAS metrics.")
@click.option("--judge/--no-judge", default=None, help="RAGAS LLM metrics (default: when a judge is set).")
@click.option(
    "--perplexity/--no-perplexity", default=False, show_default=True,
    help="Also score each answer's perplexity under the generator (one more forward pass per answer).",
)  # fmt: skip
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--dry-run", is_flag=True, help="Print the cost estimate and stop.")
@click.option("--calibrate/--no-calibrate", default=True, help="Time one answer for the estimate.")
@click.option("--name", default="", help="A label stored with the run.")
@click.option(
    "--adapter",
    default=None,
    help="Generator adapter: a folder, a registered name, 'promoted' (generator.adapter).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def eval_run(
    ctx: click.Context,
    dataset: str,
    index: Path,
    report_dir: Path | None,
    limit: int | None,
    replicates: int | None,
    seed: int | None,
    k: int | None,
    probes: str,
    probe_questions: int,
    ragas: bool,
    judge: bool | None,
    perplexity: bool,
    data_root: Path | None,
    dry_run: bool,
    calibrate: bool,
    name: str,
    adapter: str | None,
    as_json: bool,
) -> None:
    """Answer a dataset's questions through the app, score them, store the run and write a report.

    \b
    Examples:
      rag-app eval run --dataset squad-dev --index squad-index -n 300 --report reports/squad
      rag-app eval run --dataset my-questions.jsonl --index my-index --replicates 3
      rag-app eval run --dataset generate -n 50 --index my-index --probes all
      rag-app eval run --dataset scifact --index sf-index --dry-run
    """
    from eval.datasets import generate_testset, load_dataset
    from eval.runner import RunOptions, run_evaluation
    from rag_app.rag import RAG
    from rag_app.store.index import IndexStore

    settings = cli_settings(ctx)
    if adapter is not None:
        settings.generator.adapter = adapter
    kinds = PROBES if probes.strip() == "all" else tuple(p.strip() for p in probes.split(",") if p.strip())
    unknown = [p for p in kinds if p not in PROBES]
    if unknown:
        raise click.BadParameter(
            f"unknown probe {unknown[0]!r}; choose from {', '.join(PROBES)}", param_hint="--probes"
        )
    rag = RAG(index, settings)
    if dataset == "generate":
        data = generate_testset(rag.store, limit or 50, seed=settings.eval.seed if seed is None else seed)
    else:
        data = load_dataset(dataset, data_root)
    if not IndexStore.exists(index):
        if not data.documents:
            rag.store  # noqa: B018 - raises IndexNotFoundError with the ingest command to run
        if dry_run:  # an estimate builds nothing
            click.echo(
                f"no index at {index}: a real run would first index the {len(data.documents)} documents "
                f"of {data.name}; the estimate below has no measured answer time",
                err=True,
            )
            calibrate = False
        else:
            click.echo(
                f"no index at {index}: indexing the {len(data.documents)} documents of {data.name} first",
                err=True,
            )
            rag.add_documents(data.documents, progress=sys.stderr.isatty())
    options = RunOptions(
        limit=limit if dataset != "generate" else None,
        replicates=replicates,
        seed=seed,
        k=k,
        ragas=ragas,
        judge=judge,
        perplexity=perplexity,
        probes=kinds,
        probe_questions=probe_questions,
        name=name,
        command=" ".join(["rag-app", *sys.argv[1:]]),
    )
    store = _store(ctx)
    try:
        estimate = _estimate(
            rag, data, options, store, calibrate=(calibrate or not dry_run) and IndexStore.exists(index)
        )
        if dry_run:
            if as_json:
                print_json(estimate.to_dict())
            else:
                click.echo("\n".join(estimate.lines()))
            return
        options.extra_manifest = {"cost_estimate": estimate.to_dict()}
        click.echo("\n".join(estimate.lines()), err=True)
        record = run_evaluation(
            rag, data, options, store=store, progress=_progress() if not as_json else None
        )
        folder = report_dir or Path(settings.ui.reports_dir) / record.id
        from eval.runner import write_run_report

        files = write_run_report(record, folder, store)
    finally:
        store.close()
        rag.close()
    if as_json:
        print_json(
            {
                "run": record.id,
                "summary": {k: v.to_dict() for k, v in record.summary.items()},
                "report": {k: str(v) for k, v in files.items()},
            }
        )
        return
    click.echo(f"run {record.id}: {len(record.results)} answers in {record.wall_seconds:.1f} s")
    click.echo("\n".join(_summary_lines(record)))
    click.echo(f"report: {files.get('html', folder)}")


def _progress() -> Any:
    """A live line on a terminal; otherwise (a log, CI) a line every tenth of the run."""
    from eval.runner import every_tenth

    if not sys.stderr.isatty():
        return every_tenth(lambda line: click.echo(line, err=True))

    def show(done: int, total: int, question: str) -> None:
        click.echo(f"\r[{done}/{total}] {question[:60]:60}", nl=done == total, err=True)

    return show


def _estimate(rag: Any, data: Any, options: Any, store: Any, *, calibrate: bool) -> Any:
    from eval import cost
    from eval.probes import probe_calls
    from eval.ragas_metrics import estimate_judge_calls

    settings = rag.settings
    questions = min(options.limit or len(data.samples), len(data.samples))
    replicates = options.replicates or settings.eval.replicates
    configured = bool(settings.eval.judge_base_url or settings.eval.judge_local)
    judge_on = configured if options.judge is None else options.judge and configured
    judge = estimate_judge_calls(questions * replicates, judge_on) if options.ragas else 0
    generator = rag.generator
    measured = cost.previous_seconds(
        store, getattr(generator, "model_id", ""), getattr(generator, "adapter_id", None)
    )
    if measured is None and calibrate:
        measured = (cost.calibrate(rag, data.samples[0].question), "calibration (1 answer now)")
    seconds, basis = measured if measured is not None else (None, "none")
    return cost.estimate(
        questions=questions,
        replicates=replicates,
        probe_calls=probe_calls(tuple(options.probes), options.probe_questions) if options.probes else 0,
        judge_calls=judge,
        settings=settings,
        seconds_per_answer=seconds,
        basis=basis,
    )


@eval_group.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def eval_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Stored runs, newest first."""
    with _store(ctx) as store:
        rows = store.runs(limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no evaluation runs yet (rag-app eval run --dataset ... --index ...)")
    for r in rows:
        headline = ", ".join(
            f"{k} {_fmt(v)}"
            for k, v in r["metrics"].items()
            if k in ("answer.f1", "retrieval.ndcg@10", "guard.grounding")
        )
        click.echo(
            f"{r['id']}  {r['created_at']}  {r['dataset']}  {r['status']}  {r['answers']} answers  {headline}"
        )


@eval_group.command("report")
@click.argument("run_id")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Report folder.")
@click.option("--compare", "baseline", default=None, help="A run to compare against (shown in the report).")
@click.pass_context
def eval_report(ctx: click.Context, run_id: str, out: Path | None, baseline: str | None) -> None:
    """Write (again) the HTML, JSON and Markdown report of a stored run ('latest' works)."""
    from eval.report import write_report
    from eval.stats import compare_runs

    settings = cli_settings(ctx)
    with _store(ctx) as store:
        record = store.get(run_id)
        comparison = None
        if baseline:
            base = store.get(baseline)
            comparison = compare_runs(
                base.results, record.results, resamples=settings.eval.bootstrap_samples * 2
            )
        files = write_report(
            record,
            out or Path(settings.ui.reports_dir) / record.id,
            comparison=comparison,
            history=store.history(record.dataset),
        )
    click.echo("\n".join(f"{kind}: {path}" for kind, path in files.items()))


@eval_group.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.pass_context
def eval_compare(ctx: click.Context, run_a: str, run_b: str, as_json: bool, report_dir: Path | None) -> None:
    """Which metrics differ between two runs, paired over their common questions (B - A).

    A difference is significant when its Holm-adjusted permutation p-value is below 0.05.
    """
    from eval.stats import compare_runs

    settings = cli_settings(ctx)
    with _store(ctx) as store:
        a, b = store.get(run_a), store.get(run_b)
        rows = compare_runs(
            a.results, b.results, resamples=settings.eval.bootstrap_samples * 2, seed=settings.eval.seed
        )
        if report_dir is not None:
            from eval.report import write_report

            write_report(b, report_dir, comparison=rows, history=store.history(b.dataset))
    if not rows:
        raise click.ClickException(f"runs {a.id} and {b.id} share no scored questions")
    if as_json:
        print_json({"a": a.id, "b": b.id, "metrics": rows})
        return
    click.echo(f"A = {a.id} ({a.dataset}), B = {b.id} ({b.dataset}); differences are B - A")
    for r in rows:
        mark = "significant" if r["significant"] else "not significant"
        click.echo(
            f"  {r['metric']:32} {r['a']:.4f} -> {r['b']:.4f}  diff {r['diff']:+.4f} "
            f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  p {r['p_adjusted']:.4f} ({mark}, n {r['n']})"
        )


@eval_group.command("select")
@click.argument("run_id")
@click.option("--n", "n", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSONL (default selection-RUN.jsonl).",
)
@click.option(
    "--feedback/--no-feedback", default=True, show_default=True, help="Add the app's thumbs-down answers."
)
@click.pass_context
def eval_select(ctx: click.Context, run_id: str, n: int, out: Path | None, feedback: bool) -> None:
    """Write the answers most likely wrong as training rows (finetune's data builders read them).

    \b
    Then: rag-app finetune data --source jsonl --path selection.jsonl --out data/ ...
    """
    from eval.select import select, write_selection
    from rag_app.feedback import FeedbackStore

    settings = cli_settings(ctx)
    with _store(ctx) as store:
        record = store.get(run_id)
        samples = store.samples(record.id)
    fb = FeedbackStore(settings.data_dir) if feedback else None
    try:
        index_dir = record.manifest.get("index", {}).get("folder")
        chosen = select(record, samples, n, feedback=fb, index_dir=index_dir)
    finally:
        if fb is not None:
            fb.close()
    counts = write_selection(chosen, out or Path(f"selection-{record.id}.jsonl"))
    print_json(counts)
