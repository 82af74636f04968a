"""Chat with your documents in the browser: a thin Streamlit layer over :class:`rag_app.RAG`.

Start it with ``rag-app ui`` (or ``streamlit run streamlit_app.py``). Every action calls the
facade: ``RAG.ingest`` (with a progress callback), ``documents``, ``delete``, ``stats``,
``chat(...).stream``; feedback goes to :class:`rag_app.feedback.FeedbackStore`. The app holds
no retrieval, prompting or grounding logic of its own; it only shows what an
:class:`~rag_app.answer.Answer` carries: the text with flagged sentences marked, a grounding
badge, the cited passages as chips that open the passage with the supporting span highlighted.

Pages: Chat (:mod:`rag_app.ui.chat`), Documents (upload or a folder, live progress, list,
delete / re-ingest: :mod:`rag_app.ui.documents`), Evaluation (the reports found in
``ui.reports_dir``, and the feedback collected: :mod:`eval.streamlit_page`). This script holds
what is built once per process, the sidebar and the page switch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from pydantic import ValidationError

from eval.streamlit_page import evaluation_page
from rag_app.errors import RagAppError
from rag_app.feedback import FeedbackStore
from rag_app.generation import BACKENDS
from rag_app.generation.base import Generator
from rag_app.rag import RAG
from rag_app.settings import Settings
from rag_app.shared_models import SharedModels
from rag_app.ui.chat import chat_page, new_conversation
from rag_app.ui.documents import documents_page
from rag_app.ui.text import CSS

# Builds the generator from the settings; ``main`` takes one to replace the configured backend.
# (A comment, not a docstring: Streamlit renders bare string literals of the script on the page.)
GeneratorFactory = Callable[[Settings], Generator]

PAGES = ("Chat", "Documents", "Evaluation")


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
        st.button("New conversation", on_click=new_conversation, width="stretch")
    settings = base.model_copy(deep=True)
    settings.generator.backend = backend  # type: ignore[assignment]  # validated on assignment
    settings.generator.adapter = adapter.strip() or None
    settings.retrieval.k = k
    settings.retrieval.mode = "hybrid" if hybrid else "dense"
    return str(page), Path(index.strip() or str(base.ui.index)).expanduser(), settings


# -- the app --------------------------------------------------------------------------------------
def main(generator_factory: GeneratorFactory | None = None) -> None:
    """Render the app; ``generator_factory`` replaces the configured generator (tests, embedding apps)."""
    st.set_page_config(page_title="rag-app", page_icon="📚", layout="wide")
    st.markdown(CSS, unsafe_allow_html=True)
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
            chat_page(rag, feedback)
        elif page == "Documents":
            documents_page(rag, settings)
        else:
            evaluation_page(settings, feedback)
    except RagAppError as exc:  # shown, never swallowed: one line naming what to change
        st.error(str(exc))


if __name__ == "__main__":
    main()
