"""Ingest through Ray Data on a real local Ray (2 CPUs, one session for the module), real FAISS and SQLite.

The embedder is the packaged all-MiniLM-L6-v2 on ONNX in float32: its int8 variant quantizes
activations per batch, so its vectors depend on which texts share a batch (by up to 0.02), and the
Ray actors batch differently from a local ingest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from rag_app.errors import ConfigError, IngestError
from rag_app.ingest import LOCAL_RAY, installed_ingester
from rag_app.rag import RAG
from rag_app.store.index import IndexStore

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'rag-app[ray]')")

from indexes import pipeline, ray_ingest  # noqa: E402
from indexes.ingester import Ingester  # noqa: E402
from indexes.ray_ingest import STAGING_PREFIX, RayOptions, RayStats  # noqa: E402

TESTS = Path(__file__).resolve().parent
FILES = {
    "solar.md": "# Solar power\n\nPhotovoltaic panels convert sunlight into electricity.\n\n"
    "## Storage\n\nBatteries store the surplus energy for the night.\n",
    "cooking.txt": "To bake bread, knead the dough for ten minutes and let it rise for an hour.\n\n"
    "A hot oven at 230 degrees gives a crisp crust.",
    "rivers.html": "<html><head><title>Rivers</title></head><body><h1>Rivers</h1>"
    "<p>The Danube flows through ten countries before reaching the Black Sea.</p></body></html>",
    "notes/long.md": "# Long notes\n\n"
    + "\n\n".join(f"Paragraph {i} talks about topic {i} at some length, with detail." * 6 for i in range(12)),
    "notes/tea.txt": "Green tea is steeped at 80 degrees for two minutes.",
}


@pytest.fixture(scope="module")
def ray_address() -> Any:
    """One local Ray for the module; the ingests find it initialised and use it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import ray_fixtures

    ray_fixtures.register()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def fp32(settings):
    """Settings and embedder on the float32 ONNX model (exported beside the int8 one)."""
    from rag_app.embeddings import create_embedder

    exact = settings.model_copy(deep=True)
    exact.embedding.quantize = False
    return exact, create_embedder(exact)


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _chunks(index: Path) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """(id, source, ordinal, text, start, end) of every chunk, and their vectors, by id."""
    store = IndexStore.open(index)
    rows = store.docstore.conn.execute(
        'SELECT c.id, d.source, c.ordinal, c.text, c.start, c."end", c.vector '
        "FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id"
    ).fetchall()
    store.close()
    return [tuple(r[:6]) for r in rows], np.stack([np.frombuffer(r[6], dtype=np.float32) for r in rows])


@pytest.mark.slow
def test_ray_index_equals_local_and_unchanged_files_stay_on_the_driver(
    tmp_path: Path, ray_address: str, fp32
) -> None:
    settings, embedder = fp32
    docs = _write(tmp_path / "docs", FILES)
    local = pipeline.ingest([docs], tmp_path / "local", settings, embedder)
    # through the facade and the installed ingester, as `rag-app ingest --ray` does
    rag = RAG(tmp_path / "ray", settings, embedder=embedder, ingester=Ingester(ray=LOCAL_RAY))
    through_ray = rag.ingest([docs])
    for key in ("files_seen", "files_ingested", "chunks_added", "chunks_embedded", "files_failed"):
        assert getattr(through_ray, key) == getattr(local, key), key
    assert through_ray.files_ingested == len(FILES)

    local_rows, local_vectors = _chunks(tmp_path / "local")
    ray_rows, ray_vectors = _chunks(tmp_path / "ray")
    assert ray_rows == local_rows and len(ray_rows) > len(FILES)  # same ids, texts, offsets
    np.testing.assert_allclose(ray_vectors, local_vectors, atol=1e-5)
    assert rag.search("how long should dough rise?", k=1)[0].source.endswith("cooking.txt")
    assert not list((tmp_path / "ray").glob(f"{STAGING_PREFIX}*"))  # shards merged and removed

    # unchanged files are not sent to the cluster; a changed one alone is
    stats = RayStats()
    again = ray_ingest.ingest([docs], tmp_path / "ray", settings, embedder, stats=stats)
    assert again.files_unchanged == len(FILES) and again.chunks_embedded == 0
    assert stats.files_sent == 0 and stats.cluster_seconds == 0
    (docs / "notes" / "tea.txt").write_text("Black tea is steeped at 95 degrees for four minutes.")
    stats = RayStats()
    changed = ray_ingest.ingest([docs], tmp_path / "ray", settings, embedder, stats=stats)
    assert stats.files_sent == 1 and changed.files_ingested == 1 and changed.chunks_removed == 1
    assert "Black tea" in rag.search("black tea temperature", k=1)[0].text


@pytest.mark.slow
def test_killed_worker_is_restarted_by_ray_and_the_ingest_completes(
    tmp_path: Path, ray_address: str, fp32
) -> None:
    from ray_fixtures import KillingFactory

    settings, embedder = fp32
    docs = _write(tmp_path / "docs", FILES)
    marker = tmp_path / "killed"
    options = RayOptions(embedder_factory=KillingFactory(settings, "once", marker), retries=2)
    report = ray_ingest.ingest([docs], tmp_path / "ray", settings, embedder, options)
    assert marker.exists()  # the actor's process was SIGKILLed on its first call
    assert report.files_ingested == len(FILES) and report.files_failed == []
    pipeline.ingest([docs], tmp_path / "local", settings, embedder)
    assert _chunks(tmp_path / "ray")[0] == _chunks(tmp_path / "local")[0]


@pytest.mark.slow
def test_worker_dying_every_time_fails_clearly_and_keeps_the_index(
    tmp_path: Path, ray_address: str, fp32
) -> None:
    from ray_fixtures import KillingFactory

    settings, embedder = fp32
    docs = _write(tmp_path / "docs", FILES)
    ray_ingest.ingest([docs], tmp_path / "ray", settings, embedder)
    before = _chunks(tmp_path / "ray")[0]
    (docs / "notes" / "tea.txt").write_text("Black tea is steeped at 95 degrees for four minutes.")
    options = RayOptions(embedder_factory=KillingFactory(settings, "always", tmp_path / "killed"), retries=1)
    with pytest.raises(IngestError, match=r"failed on the cluster.*the index is unchanged"):
        ray_ingest.ingest([docs], tmp_path / "ray", settings, embedder, options)
    assert _chunks(tmp_path / "ray")[0] == before
    assert not list((tmp_path / "ray").glob(f"{STAGING_PREFIX}*"))
    hits = RAG(tmp_path / "ray", settings, embedder=embedder).search("green tea", k=1)
    assert "Green tea" in hits[0].text  # the previous index still answers


@pytest.mark.slow
def test_driver_killed_mid_run_leaves_the_previous_index(tmp_path: Path, ray_address: str, fp32) -> None:
    """A driver on the module's Ray is SIGKILLed by its own actor while the cluster works."""
    settings, embedder = fp32
    docs = _write(tmp_path / "docs", FILES)
    index = tmp_path / "ray"
    ray_ingest.ingest([docs], index, settings, embedder)
    before = _chunks(index)[0]
    manifest = (index / "manifest.json").read_text()
    (docs / "notes" / "tea.txt").write_text("Black tea is steeped at 95 degrees for four minutes.")
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        import ray, ray_fixtures
        from indexes import ray_ingest
        from rag_app.embeddings import create_embedder
        from rag_app.settings import Settings

        ray.init(address={ray_address!r}, log_to_driver=False)
        ray_fixtures.register()
        settings = Settings.model_validate_json({settings.model_dump_json()!r})
        marker = Path({str(tmp_path / "killed")!r})
        factory = ray_fixtures.KillingFactory(settings, "driver", marker, os.getpid())
        ray_ingest.ingest([{str(docs)!r}], {str(index)!r}, settings, create_embedder(settings),
                          ray_ingest.RayOptions(embedder_factory=factory))
        print("not killed")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stdout + done.stderr[-3000:]
    assert (tmp_path / "killed").exists()
    assert _chunks(index)[0] == before and (index / "manifest.json").read_text() == manifest
    assert list(index.glob(f"{STAGING_PREFIX}*"))  # the killed run's staging folder is left behind

    report = ray_ingest.ingest([docs], index, settings, embedder)  # the next run cleans it up
    assert report.files_ingested == 1 and not list(index.glob(f"{STAGING_PREFIX}*"))
    assert any("Black tea" in row[3] for row in _chunks(index)[0])


@pytest.mark.slow
def test_cli_ingest_with_ray(tmp_path: Path, ray_address: str, settings, monkeypatch) -> None:
    from rag_app.cli import cli

    monkeypatch.setenv("RAG_APP_CACHE_DIR", str(settings.cache_dir))
    docs = _write(tmp_path / "docs", {"solar.md": FILES["solar.md"], "tea.txt": FILES["notes/tea.txt"]})
    index = tmp_path / "index"
    result = CliRunner().invoke(
        cli, ["ingest", str(docs), "--index", str(index), "--json", "--ray", ray_address]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files_ingested"] == 2
    again = CliRunner().invoke(cli, ["ingest", str(docs), "--index", str(index), "--json", "--ray"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["files_unchanged"] == 2


def test_installed_ingester_takes_the_ray_address() -> None:
    ingester = installed_ingester(ray="ray://head:10001")
    assert isinstance(ingester, Ingester) and ingester.ray == RayOptions(address="ray://head:10001")
    assert installed_ingester().ray is None  # type: ignore[attr-defined]


def test_missing_ray_names_the_extra(tmp_path: Path, settings, embedder, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ConfigError, match=r"pip install 'rag-app\[ray\]'"):
        ray_ingest.ingest([tmp_path], tmp_path / "index", settings, embedder)
    assert not (tmp_path / "index").exists()


@pytest.mark.slow
def test_unreachable_cluster_fails_fast_and_creates_nothing(tmp_path: Path, fp32, monkeypatch) -> None:
    settings, embedder = fp32
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a process without Ray
    docs = _write(tmp_path / "docs", {"tea.txt": FILES["notes/tea.txt"]})
    index = tmp_path / "index"
    RAG(index, settings, embedder=embedder).ingest([docs])
    before = _chunks(index)[0]
    (docs / "tea.txt").write_text("Black tea is steeped at 95 degrees for four minutes.")
    with pytest.raises(IngestError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1 .*unchanged"):
        ray_ingest.ingest([docs], index, settings, embedder, RayOptions(address="127.0.0.1:1"))
    assert _chunks(index)[0] == before


def test_pii_redaction_is_refused_before_any_work(tmp_path: Path, settings, embedder) -> None:
    redacting = settings.model_copy(deep=True)
    redacting.index.redact_pii = True
    with pytest.raises(ConfigError, match="redact_pii"):
        ray_ingest.ingest([tmp_path], tmp_path / "index", redacting, embedder)
    assert not (tmp_path / "index").exists()
