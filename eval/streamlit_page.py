"""The Streamlit app's Evaluation page: feedback counts, the eval run store, the retraining loop's
lineage, the labelling queue, and the reports under ``ui.reports_dir``. It reads the ``eval`` and
``finetune`` stores, so it lives here rather than in :mod:`rag_app.ui` (DESIGN.md, "Packages")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from rag_app.feedback import FeedbackStore
from rag_app.settings import Settings
from rag_app.ui.text import inert

REPORT_SUFFIXES = (".json", ".md", ".html", ".png", ".svg")


def evaluation_page(settings: Settings, feedback: FeedbackStore) -> None:
    """Everything measured so far: feedback, runs, the loop, the labelling queue, the reports."""
    st.title("Evaluation")
    counts = feedback.counts()
    st.caption(
        f"Feedback collected for the retraining loop: {counts['up']} 👍, {counts['down']} 👎, "
        f"{counts['corrections']} corrections (`{feedback.path}`)."
    )
    _stored_runs(settings)
    _loop_lineage(settings)
    _labelling_queue(settings)
    folder = settings.ui.reports_dir
    reports = report_files(folder)
    if not reports:
        where = Path(folder).expanduser().resolve()
        missing = "" if where.is_dir() else ", a folder that does not exist yet"
        st.info(
            f"No evaluation reports yet: looked in `{where}` (setting `ui.reports_dir`{missing}). Reports "
            "that the eval package writes there (JSON, Markdown, HTML or chart images) are listed here, "
            "newest first."
        )
        return
    chosen = st.selectbox("Report", reports, format_func=lambda p: str(p.relative_to(folder)), key="report")
    _show_report(Path(chosen))


RUN_COLUMNS = ("answer.f1", "retrieval.ndcg@10", "guard.grounding", "ragas.faithfulness")


def _stored_runs(settings: Settings) -> None:
    """The evaluation runs in the run store (``rag-app eval list``), newest first, when there are any."""
    from eval.runs import DB_NAME, RunStore

    path = settings.eval.runs_db or Path(settings.data_dir) / DB_NAME
    if not path.is_file():
        return
    with RunStore(path) as store:
        runs = store.runs(limit=20)
    if not runs:
        return
    st.subheader("Runs")
    rows = [
        {"run": r["id"], "dataset": r["dataset"], "status": r["status"], "answers": r["answers"]}
        | {name: r["metrics"].get(name) for name in RUN_COLUMNS}
        for r in runs
    ]
    st.dataframe(rows, hide_index=True, key="runs")
    st.caption(
        "Compare two runs with `rag-app eval compare A B`; `rag-app eval report RUN` writes a run's report."
    )


def _loop_lineage(settings: Settings) -> None:
    """The retraining loop: the promoted adapter, each iteration's lineage and decision, and the
    primary metric over iterations (``rag-app loop history``)."""
    from finetune.registry import REGISTRY_DB, Registry

    registry = Registry.from_settings(settings)
    if not (registry.folder / REGISTRY_DB).is_file():
        return
    iterations = registry.iterations()
    promoted = registry.promoted()
    if not iterations and promoted is None:
        return
    st.subheader("Retraining loop")
    st.caption(
        f"Promoted adapter: **{promoted.name if promoted else 'none (the base model)'}**. "
        "`rag-app adapters rollback` returns to the one before."
    )
    rows, points = [], []
    for it in iterations:
        primary = it["settings"]["primary_metric"]
        main = next((e for e in it["evidence"] if e["metric"] == primary), None)
        rows.append(
            {
                "iteration": it["id"],
                "at": it["at"],
                "from": it["parent"] or "base",
                "candidate": it["candidate"],
                primary: f"{main['a']:.3f} -> {main['b']:.3f}" if main else "",
                "95% interval of the gain": f"[{main['ci_low']:+.3f}, {main['ci_high']:+.3f}]"
                if main
                else "",
                "decision": "promoted" if it["promoted"] else "kept",
                "why": it["reason"],
            }
        )
        if main:
            points += [
                {"iteration": it["id"], "adapter": "current", primary: main["a"]},
                {"iteration": it["id"], "adapter": "candidate", primary: main["b"]},
            ]
    if rows:
        st.dataframe(rows, hide_index=True, key="loop")
    if len(points) >= 4:  # a line needs two iterations; one is the table's row
        st.line_chart(points, x="iteration", y=primary, color="adapter")


def _labelling_queue(settings: Settings) -> None:
    """Questions the loop could not label: type the right answer, or mark it unanswerable."""
    from eval.labelling import DB_NAME, LabellingQueue

    if not (Path(settings.data_dir) / DB_NAME).is_file():
        return
    with LabellingQueue(settings.data_dir) as queue:
        pending = queue.pending(limit=10)
        counts = queue.counts()
        if not pending:
            return
        st.subheader("Labelling queue")
        waiting = "1 question waits" if counts["pending"] == 1 else f"{counts['pending']} questions wait"
        st.caption(
            f"{waiting} for a right answer ({counts['labelled']} labelled); "
            "labelled ones join the next loop iteration's training pool."
        )
        for row in pending:
            with st.form(key=f"label-{row['id']}"):
                st.markdown(f"**{inert(row['question'])}**")
                st.caption(f"The app answered: {inert(row['app_answer'] or '(nothing)')}")
                with st.expander("Sources"):
                    st.markdown(
                        f'<div class="rag-passage">{inert(row["context"])}</div>', unsafe_allow_html=True
                    )
                answer = st.text_input("Right answer", key=f"answer-{row['id']}")
                unanswerable = st.checkbox("The documents do not answer it", key=f"none-{row['id']}")
                if st.form_submit_button("Save label"):
                    if unanswerable or answer.strip():
                        queue.label(row["id"], None if unanswerable else answer)
                        st.rerun()
                    else:
                        st.warning("Type the right answer, or tick that the documents do not answer it.")


def report_files(folder: Path) -> list[Path]:
    """The reports under ``folder``: newest run folder first, its ``report.html`` before the rest."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*") if p.suffix in REPORT_SUFFIXES and p.is_file()]
    newest: dict[Path, float] = {}
    for p in files:
        newest[p.parent] = max(newest.get(p.parent, 0.0), p.stat().st_mtime)
    return sorted(
        files,
        key=lambda p: (newest[p.parent], str(p.parent), p.name == "report.html", p.stat().st_mtime),
        reverse=True,
    )


def _show_report(path: Path) -> None:
    if path.suffix in (".png", ".svg"):
        st.image(str(path))
    elif path.suffix == ".md":
        st.markdown(path.read_text(encoding="utf-8"))
    elif path.suffix == ".html":
        import streamlit.components.v1 as components

        components.html(path.read_text(encoding="utf-8"), height=600, scrolling=True)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            st.error(f"{path} is not valid JSON: {exc}")
            return
        metrics = report_numbers(data)
        if metrics:
            st.bar_chart(metrics, horizontal=True)
        st.json(data, expanded=False)


def report_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a report (``{"retrieval": {"mrr": 0.8}}`` -> ``{"retrieval.mrr": 0.8}``)."""
    if isinstance(data, dict):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(report_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(data, int | float) and not isinstance(data, bool):
        return {prefix.rstrip("."): float(data)}
    return {}
