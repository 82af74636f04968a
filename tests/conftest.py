"""Shared fixtures: the real evaluation data beside the project, settings with a private cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    return path


def chromium_path() -> str:
    """Debian's chromium (Playwright drives it; it never downloads a browser); skips when absent."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where converted models go during the tests.

    ``RAG_APP_TEST_CACHE_DIR`` reuses a folder across runs (faster locally); CI starts empty,
    so the ONNX export and the GGUF conversion are exercised there.
    """
    reuse = os.environ.get("RAG_APP_TEST_CACHE_DIR")
    if reuse:
        Path(reuse).mkdir(parents=True, exist_ok=True)
        return Path(reuse)
    return tmp_path_factory.mktemp("rag-app-cache")


TEST_GENERATOR = "SmolLM2-135M-Instruct"
"""The tiny packaged generator the tests run (the 0.5B default is exercised by its own slow tests)."""


@pytest.fixture(scope="session")
def settings(cache_dir: Path):
    from rag_app.settings import Settings

    # float32: the tiny models' answers stay what the tests were written against (``auto`` picks
    # bfloat16 on CPUs with fast bfloat16, which CI's machines have)
    # no in-process RAGAS judge by default in tests (its own tests turn it on): it costs ~10 calls an answer
    return Settings(
        cache_dir=cache_dir,
        generator={"model": TEST_GENERATOR, "dtype": "float32"},
        eval={"judge_local": False},
    )


@pytest.fixture(scope="session")
def embedder(settings):
    """The packaged all-MiniLM-L6-v2 on the default backend (ONNX int8), exported once a session."""
    from rag_app.embeddings import create_embedder

    return create_embedder(settings)
