"""``rag-app loop``: run one retraining iteration, and show the loop's history (loaded lazily)."""

from __future__ import annotations

from pathlib import Path

import click

from rag_app.cli_common import cli_settings, print_json


@click.group("loop")
def loop_group() -> None:
    """The retraining loop: evaluate, select failures, retrain, gate, promote."""


@loop_group.command("run")
@click.option("--index", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--dataset", required=True, help="What `rag-app eval run --dataset` takes (JSONL, squad-dev, ...)."
)
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--frozen-dataset",
    default=None,
    help="The frozen evaluation split as its own dataset.",
)
@click.option(
    "--halueval", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="HaluEval qa_pairs.jsonl: extra preference pairs for DPO.",
)  # fmt: skip
@click.option("--replay/--no-replay", default=None, help="Also train on earlier iterations' failures.")
@click.option(
    "--replay-share", type=click.FloatRange(0.0, 2.0), default=None,
    help="Right pool answers replayed on the model's own answer, as a share of the failure rows [0.5].",
)  # fmt: skip
@click.option(
    "--max-not-found-share", type=click.FloatRange(0.0, 0.5, max_open=True), default=None,
    help="Most SFT rows with the abstention target (only where the passage is absent) [0.1].",
)  # fmt: skip
@click.option("--budget-minutes", type=float, default=None, help="Training time for the candidate.")
@click.option("--method", type=click.Choice(["sft", "sft-dpo"]), default=None)
@click.option("--eval-limit", type=click.IntRange(2), default=None, help="Frozen questions evaluated.")
@click.option("--pool-limit", type=click.IntRange(1), default=None, help="Pool questions answered.")
@click.option(
    "--select", "select_n", type=click.IntRange(1), default=None, help="Failures kept for training."
)
@click.option(
    "--calibrate",
    "calibration_limit",
    type=click.IntRange(0),
    default=None,
    help="Other pool questions the candidate answers to fit its own verdict (0: the lexical one).",
)
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--track/--no-track", default=None, help="Log the iteration to MLflow (rag-app[track]).")
@click.option("--tracking-uri", default=None, help="An MLflow server (default: <data_dir>/mlruns).")
@click.pass_context
def loop_run(ctx: click.Context, **options: object) -> None:
    """One iteration; promotes the candidate only on a significant gain with no regression.

    \b
    Example:
      rag-app loop run --index my-index --dataset qa.jsonl --budget-minutes 30
    """
    from eval.loop import LoopSettings, run_iteration

    given = {k: v for k, v in options.items() if v is not None}
    record = run_iteration(
        cli_settings(ctx), LoopSettings.model_validate(given), say=lambda line: click.echo(line, err=True)
    )
    print_json({k: v for k, v in record.items() if k != "evidence"} | {"evidence": record["evidence"]})


@loop_group.command("watch")
@click.option("--index", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", required=True)
@click.option(
    "--thumbs-down", type=click.IntRange(1), default=20, show_default=True, help="New thumbs-down answers."
)
@click.option(
    "--new-documents", type=click.IntRange(1), default=50, show_default=True, help="New indexed documents."
)
@click.option("--every-hours", type=float, default=None, help="Also on a schedule.")
@click.option("--poll-seconds", type=click.IntRange(1), default=300, show_default=True)
@click.option("--once", is_flag=True, help="Check once (run if due) and exit: for cron or a systemd timer.")
@click.option("--budget-minutes", type=float, default=None)
@click.pass_context
def loop_watch(
    ctx: click.Context, index: Path, dataset: str, thumbs_down: int, new_documents: int,
    every_hours: float | None, poll_seconds: int, once: bool, budget_minutes: float | None,
) -> None:  # fmt: skip
    """Run an iteration whenever new thumbs-down answers, new documents or the schedule say so.

    \b
    From cron, every 30 minutes:
      */30 * * * *  cd /srv/rag && rag-app loop watch --once --index my-index --dataset qa.jsonl
    """
    import time

    from eval.loop import LoopSettings, history_rows, run_iteration
    from eval.triggers import Triggers, due, last_snapshot, snapshot

    settings = cli_settings(ctx)
    triggers = Triggers(thumbs_down, new_documents, every_hours)
    loop = LoopSettings.model_validate(
        {"index": index, "dataset": dataset, **({"budget_minutes": budget_minutes} if budget_minutes else {})}
    )
    while True:
        reason = due(snapshot(settings, index), last_snapshot(history_rows(settings)), triggers)
        if reason:
            click.echo(f"iteration due: {reason}")
            record = run_iteration(settings, loop, say=lambda line: click.echo(line, err=True))
            click.echo(
                f"{record['candidate']}: {'promoted' if record['promoted'] else 'kept'}: {record['reason']}"
            )
        elif once:
            click.echo("nothing due")
        if once:
            return
        time.sleep(poll_seconds)


@loop_group.command("history")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def loop_history(ctx: click.Context, as_json: bool) -> None:
    """Each iteration: parent -> candidate, the primary metric before and after, the decision."""
    from eval.loop import history_rows

    rows = history_rows(cli_settings(ctx))
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no loop iterations yet (run `rag-app loop run`)")
    for row in rows:
        primary = row["settings"]["primary_metric"]
        main = next((e for e in row["evidence"] if e["metric"] == primary), None)
        change = (
            f"{primary} {main['a']:.3f} -> {main['b']:.3f} [{main['ci_low']:+.3f}, {main['ci_high']:+.3f}]"
            if main
            else ""
        )
        verdict = "PROMOTED" if row["promoted"] else "kept"
        click.echo(
            f"{row['id']:>3} {row['at']}  {row['parent'] or 'base'} -> {row['candidate']}  {change}  "
            f"{verdict}"
        )
