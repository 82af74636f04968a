"""Training the hallucination guard: data readers, metrics and baselines, the training recipe.

The runtime guard that scores answers, and the model files it ships with, stay in
:mod:`rag_app.guard`; this package writes those files (``rag-app guard train``) and needs
scikit-learn (the ``train`` extra).
"""
