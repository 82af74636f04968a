"""The Chat page: a conversation over the index (``RAG.chat(...).stream``), each answer with its
grounding badge, flagged sentences, citation chips that open the passage, and feedback controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from rag_app.answer import Answer, Citation
from rag_app.errors import IndexNotFoundError, RagAppError
from rag_app.feedback import FeedbackStore
from rag_app.rag import RAG
from rag_app.ui.text import highlight, inert, label_text, marked_text


def new_conversation() -> None:
    """Forget the turns shown and start a new stored conversation on the next question."""
    st.session_state.turns = []
    st.session_state.conversation = None


# -- chat ---------------------------------------------------------------------------------------
def chat_page(rag: RAG, feedback: FeedbackStore) -> None:
    """The conversation so far and a question box; answers stream in, then show their checks."""
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
        new_conversation()
        st.session_state.chat_index = str(rag.index_dir)
    turns: list[dict[str, Any]] = st.session_state.setdefault("turns", [])
    for i, turn in enumerate(turns):
        with st.chat_message("user"):
            st.markdown(inert(turn["question"]))
        with st.chat_message("assistant"):
            _show_answer(i, turn, rag, feedback)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(inert(question))
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
        box.markdown(f'<div class="rag-answer">{inert(text)}</div>', unsafe_allow_html=True)
    return text


def _show_answer(i: int, turn: dict[str, Any], rag: RAG, feedback: FeedbackStore) -> None:
    answer: Answer = turn["answer"]
    if answer.abstained:
        st.warning(f"**{inert(answer.text)}** {inert(answer.abstain_reason or '')}", icon="🚫")
        if answer.draft and st.session_state.get("show_rejected"):
            st.caption(f"Withheld draft, not supported by the documents: “{inert(answer.draft)}”")
    else:
        st.markdown(f'<div class="rag-answer">{marked_text(answer)}</div>', unsafe_allow_html=True)
        if not answer.supported:
            st.error("Not supported by the documents: check it against the sources.", icon="⚠️")
    _grounding_badge(answer)
    for sentence in answer.grounding.flagged if answer.grounding is not None else []:
        st.caption(
            f"⚠️ Not found in the sources: “{inert(sentence.text.strip())}” (support {sentence.score:.2f})"
        )
    _citation_chips(i, answer)
    _feedback_controls(i, turn, rag, feedback)


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
    name = label_text(Path(c.source).name)
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
    where = f"**[{c.number}] {inert(c.source)}**" + (f" · page {c.page}" if c.page else "")
    where += f" · characters {c.start}–{c.end} · retrieval score {c.score:.3f}"
    ranges = []
    for s in answer.grounding.sentences if answer.grounding is not None else []:
        if s.source == c.number and c.start <= s.source_start < s.source_end <= c.end:
            ranges.append((s.source_start - c.start, s.source_end - c.start))
    with st.container(border=True, key=f"passage-{c.chunk_id}-{c.number}"):
        st.markdown(where)
        if c.heading_path:
            st.caption(inert(" › ".join(c.heading_path)))
        st.markdown(f'<div class="rag-passage">{highlight(c.text, ranges)}</div>', unsafe_allow_html=True)
        if ranges:
            first = min(ranges)
            st.caption(f"Highlighted: characters {c.start + first[0]}–{c.start + first[1]} of the document.")
        else:
            st.caption("No single span of this passage was matched to the answer.")


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
