"""The Documents page: upload files or name a folder, ingest with live progress (``RAG.ingest``),
list the indexed documents, delete or re-ingest one."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag_app.errors import IndexNotFoundError, RagAppError
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.ui.text import code, inert


def documents_page(rag: RAG, settings: Settings) -> None:
    """Upload or name files to ingest, then the list of indexed documents."""
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
        st.warning(f"Skipped {code(item['path'])}: {inert(item['error'])}")


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
            st.success(f"Deleted {code(source)} ({removed} chunks).")
            st.rerun()
    if reingest.button("Re-ingest", key="reingest-document", width="stretch", help="Reads the file again"):
        _ingest(rag, [Path(source)])
