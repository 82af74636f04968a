"""The main job (ingest, index stats, search, ask) succeeds on a machine with no network at all.

The CLI runs in a subprocess inside a fresh network namespace (``unshare -n``: no interface but a
loopback that is down). Where creating one is not permitted (an unprivileged container), the same
commands run with sockets blocked instead. In both cases a ``sitecustomize`` records every attempt to
resolve a name or to connect anywhere but the loopback, and makes it fail: the test asserts that the
commands succeed *and* that nothing even tried, so a library that quietly retries or falls back
after a refused connection is caught too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag_app.offline import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SITECUSTOMIZE = textwrap.dedent(
    '''
    """Test only (tests/test_network_isolation.py): log and refuse every non-loopback connection."""
    import ipaddress
    import os
    import socket

    _LOG = os.environ["RAG_APP_TEST_NETWORK_LOG"]
    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


    def _loopback(host):
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False


    def _note(kind, target):
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{kind} {target!r}\\n")


    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _note("connect", address)
            raise OSError(101, "network blocked by the test")
        return _connect(self, address)


    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _note("connect_ex", address)
            return 101
        return _connect_ex(self, address)


    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            _note("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, "name resolution blocked by the test")
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    '''
)


def _isolation() -> list[str]:
    """``["unshare", "-n"]`` where a new network namespace can be made here, else ``[]``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=30, check=False)
    return [unshare, "-n"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def offline_cli(settings, embedder, tmp_path_factory: pytest.TempPathFactory):
    """Run ``rag-app ARGS`` with no network; returns (result, attempts logged)."""
    from rag_app.models import generator_folder

    generator_folder(settings)  # the GGUF -> safetensors conversion, cached once a session
    # (``embedder`` did the same for the ONNX export: the subprocesses find both in the cache)
    work = tmp_path_factory.mktemp("offline")
    site = work / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = work / "network.log"
    env = {
        k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and not k.startswith(("RAG_APP_", "HF_"))
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "RAG_APP_TEST_NETWORK_LOG": str(log),
        "HF_HOME": str(work / "hf-home"),  # an empty hub cache: nothing to fall back on
        "RAG_APP_CACHE_DIR": str(settings.cache_dir),
        "RAG_APP_DATA_DIR": str(work / "data"),
        "RAG_APP_GENERATOR__MODEL": "SmolLM2-135M-Instruct",
        "RAG_APP_GENERATOR__DTYPE": "float32",
        "RAG_APP_GENERATOR__THREADS": "1",
        "RAG_APP_GENERATOR__MAX_NEW_TOKENS": "64",
    }
    prefix = _isolation()

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "rag_app.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,  # no ./rag-app.toml of the developer's is read
            timeout=600,
            check=False,
        )
        attempts = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
        return result, attempts

    run.namespace = bool(prefix)  # type: ignore[attr-defined]
    run.index = work / "index"  # type: ignore[attr-defined]
    return run


def test_ingest_search_ask_succeed_without_a_network(offline_cli) -> None:
    index = str(offline_cli.index)
    if offline_cli.namespace:  # the namespace really has no network: not even its loopback is up
        connect = "import socket; socket.create_connection(('127.0.0.1', 9), 2)"
        probe = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", connect],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert probe.returncode != 0 and "unreachable" in probe.stderr.lower(), probe.stderr

    ingested, attempts = offline_cli("ingest", str(ROOT / "examples" / "docs"), "--index", index, "--json")
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    assert json.loads(ingested.stdout)["files_ingested"] == 3
    stats, attempts = offline_cli("index", "stats", index)
    assert stats.returncode == 0, stats.stderr[-3000:]
    question = "what happens if an ingest is killed halfway?"
    found, attempts = offline_cli("search", question, "--index", index, "-k", "3", "--json")
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.stdout.strip(), "search printed nothing"
    asked, attempts = offline_cli("ask", question, "--index", index, "--json", "--no-stream")
    assert asked.returncode == 0, asked.stderr[-3000:]
    answer = json.loads(asked.stdout)
    assert answer["model"] == "SmolLM2-135M-Instruct" and answer["text"].strip()
    assert answer["citations"], answer
    assert attempts == [], f"network use was attempted: {attempts}"

    # PII redaction (the pii extra) is offline too: Presidio's e-mail check uses tldextract, whose
    # default extractor would fetch the public-suffix list
    if importlib.util.find_spec("presidio_analyzer") is not None:
        private = str(offline_cli.index) + "-pii"
        redacted, attempts = offline_cli(
            "ingest", str(ROOT / "examples" / "docs"), "--index", private, "--redact-pii", "--json"
        )
        assert redacted.returncode == 0, redacted.stderr[-3000:]
        assert json.loads(redacted.stdout)["files_ingested"] == 3
        assert attempts == [], f"network use was attempted: {attempts}"


def test_the_blocker_logs_and_refuses_what_it_blocks(tmp_path: Path) -> None:
    """The ``sitecustomize`` above really intercepts (before any packet: the call never reaches the
    socket), so an empty log in the main test means nothing tried."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.log"
    code = (
        "import socket\n"
        "for call in (lambda: socket.getaddrinfo('example.invalid', 80),\n"
        "             lambda: socket.socket().connect(('192.0.2.1', 80))):\n"
        "    try:\n        call()\n    except OSError as exc:\n        print(type(exc).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RAG_APP_TEST_NETWORK_LOG": str(log)}
    result = subprocess.run(
        [*_isolation(), sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gaierror", "OSError"]
    assert log.read_text(encoding="utf-8").splitlines() == [
        "getaddrinfo 'example.invalid'",
        "connect ('192.0.2.1', 80)",
    ]
