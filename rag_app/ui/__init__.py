"""The Streamlit app's pages over the :class:`rag_app.RAG` facade (``streamlit_app.py`` mounts them).

These modules import ``streamlit`` (the ``ui`` extra); ``import rag_app`` never imports them. The
Evaluation page reads the ``eval`` and ``finetune`` stores, so it lives in :mod:`eval.streamlit_page`.
"""
