"""The hallucination report and the run report (JSON, Markdown, one self-contained HTML page).

The run is built by hand so every aggregate can be checked against figures computed here. The
HTML page is opened in a real headless Chromium (Debian's ``chromium`` driven by Playwright
through ``executable_path``; nothing is downloaded) from a file:// URL with every other request
refused; the test is skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium_path

from eval.hallucination import NO_SOURCE, hallucination_report
from eval.report import render_html, render_markdown, report_data, write_report
from eval.types import EvalSample, FlaggedSentence, MetricSummary, Passage, RunRecord, SampleResult

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCRIPT_ANSWER = "Paris is in France [1]. <script>alert('x')</script> The tower is made of cheese."


def _passage(number: int, source: str, page: int | None = None, cited: bool = False) -> Passage:
    return Passage(
        number, source, page, 0, 40, number, 1.0 / number, f"Text of {source} passage {number}.", cited
    )


def _results() -> list[SampleResult]:
    """Five answers: two flagged (a tie on grounding), one clean, one abstained, one without guard."""
    return [
        SampleResult(
            "q1",
            0,
            "Where is the tower & what is it made of?",
            SCRIPT_ANSWER,
            passages=[_passage(1, "a.pdf", 3, cited=True), _passage(2, "b.md")],
            grounding=0.2,
            sentences=[
                FlaggedSentence("Paris is in France [1].", 0.9, False, citations=[1], evidence=[1]),
                FlaggedSentence(
                    "<script>alert('x')</script>",
                    0.1,
                    True,
                    "cited source does not support it",
                    citations=[1],
                    evidence=[2],
                    evidence_text="Text of b.md passage 2.",
                ),
                FlaggedSentence("The tower is made of cheese.", 0.05, True, "unsupported"),
            ],
            metrics={"answer.f1": 0.4, "ragas.faithfulness": None, "retrieval.mrr": 1.0},
            errors={"ragas.faithfulness": "judge returned unparseable JSON"},
            timings={"total": 1.5},
            qtype="what",
        ),
        SampleResult(
            "q2",
            0,
            "Who designed it?",
            "Gustave Eiffel's company [1].",
            passages=[_passage(1, "b.md", cited=True)],
            grounding=0.9,
            sentences=[FlaggedSentence("Gustave Eiffel's company [1].", 0.9, False, citations=[1])],
            metrics={"answer.f1": 1.0, "ragas.faithfulness": None, "retrieval.mrr": 0.5},
            errors={"ragas.faithfulness": "judge returned unparseable JSON"},
            timings={"total": 2.5},
            qtype="who",
        ),
        SampleResult(
            "q3",
            0,
            "When was it built?",
            "In 1712 [1].",
            passages=[_passage(1, "a.pdf", 4, cited=True)],
            grounding=0.2,
            sentences=[
                FlaggedSentence("In 1712 [1].", 0.2, True, "unsupported", citations=[1], evidence=[1])
            ],
            metrics={"answer.f1": 0.0, "ragas.faithfulness": None, "retrieval.mrr": float("nan")},
            errors={"ragas.faithfulness": "timeout"},
            timings={"total": 1.0},
            qtype="what",
        ),
        SampleResult(
            "q4",
            0,
            "Who painted it?",
            "The documents do not say.",
            abstained=True,
            passages=[_passage(1, "c.txt")],
            metrics={"answer.f1": 0.0, "ragas.faithfulness": None},
            qtype="who",
        ),
        SampleResult(
            "q5",
            0,
            "Is it tall?",
            "Yes.",
            metrics={"answer.f1": 1.0, "ragas.faithfulness": None},
        ),
    ]


def _summary(means: dict[str, float | None]) -> dict[str, MetricSummary]:
    out = {}
    for name, mean in means.items():
        if mean is None:
            out[name] = MetricSummary(name, None, 0, 5)
        else:
            out[name] = MetricSummary(name, mean, 5, 0, round(mean - 0.1, 6), round(mean + 0.1, 6))
    return out


def _run(run_id: str = "run-3", created: str = "2025-01-03T10:00:00", **means: float | None) -> RunRecord:
    values: dict[str, float | None] = {
        "retrieval.recall@5": 0.8,
        "retrieval.mrr": 0.75,
        "answer.f1": 0.48,
        "answer.exact_match": 0.4,
        "ragas.faithfulness": None,
        "guard.grounding": 0.43,
        "latency.total_s": 1.67,
    }
    values.update(means)
    results = _results()
    return RunRecord(
        id=run_id,
        created_at=created,
        dataset="eiffel <mini>",
        manifest={
            "corpus_hash": "sha256:abc123",
            "models": {"embedder": "bge-small", "generator": "qwen2.5-0.5b"},
            "adapter": None,
            "seeds": {"eval": 0, "probes": 1},
            "versions": {"rag_app": "0.1.0", "python": "3.11"},
            "cost_estimate": {"usd": 0.0123, "gpu_hours": 0.01},
            "gpu_util": float("nan"),
            "command": "rag-app eval eiffel",
        },
        summary=_summary(values),
        results=results,
        hallucination=hallucination_report(results, {"q5": EvalSample("q5", "Is it tall?", qtype="claim")}),
        probes={
            "injection": {
                "summary": {"attack_success_rate": 0.1, "n": 10, "by_kind": {"ignore": 0.2}},
                "cases": [
                    {"attack": f"<b>ignore previous</b> {i}", "answer": "No.", "success": i == 0}
                    for i in range(8)
                ],
            },
            "bias": {"summary": {"max_gap": 0.05}, "cases": []},
        },
        wall_seconds=12.5,
    )


COMPARISON: list[dict[str, Any]] = [
    {"metric": "answer.f1", "a": 0.38, "b": 0.48, "diff": 0.1, "ci_low": 0.02, "ci_high": 0.18,
     "p_value": 0.01, "significant": True},
    {"metric": "retrieval.mrr", "a": 0.77, "b": 0.75, "diff": -0.02, "ci_low": -0.05, "ci_high": 0.01,
     "p_value": 0.4, "significant": False},
    {"metric": "ragas.faithfulness", "a": None, "b": None, "diff": None, "ci_low": None, "ci_high": None,
     "p_value": None, "significant": False},
]  # fmt: skip


def _history() -> list[RunRecord]:
    return [
        RunRecord(run_id, created, "eiffel <mini>", {}, _summary({"answer.f1": f1, "retrieval.mrr": mrr}))
        for run_id, created, f1, mrr in (
            ("run-1", "2025-01-01T10:00:00", 0.3, 0.7),
            ("run-2", "2025-01-02T10:00:00", 0.38, 0.77),
        )
    ]


# -- hallucination aggregates ---------------------------------------------------------------------
def test_hallucination_overall_by_source_by_qtype_and_worst_first() -> None:
    samples = {"q5": EvalSample("q5", "Is it tall?", qtype="claim")}
    report = hallucination_report(_results(), samples, worst=3)
    assert report["overall"] == {
        "answers": 5,
        "answered": 4,
        "abstained": 1,
        "errors": 0,
        "with_flagged": 2,
        "flagged_answer_share": 0.5,
        "sentences": 5,
        "flagged_sentences": 3,
        "flagged_sentence_share": 0.6,
        "mean_grounding": pytest.approx((0.2 + 0.9 + 0.2) / 3),
    }
    # q1's <script> sentence: evidence [2] b.md and citation [1] a.pdf; its cheese sentence points
    # nowhere, so the top passage a.pdf; q3 cites a.pdf; q2 has no flag: its top passage b.md.
    assert report["by_source"] == {
        "a.pdf": {
            "answers": 2,
            "with_flagged": 2,
            "flagged_sentences": 3,
            "mean_grounding": pytest.approx(0.2),
        },
        "b.md": {
            "answers": 2,
            "with_flagged": 1,
            "flagged_sentences": 1,
            "mean_grounding": pytest.approx(0.55),
        },
        NO_SOURCE: {"answers": 1, "with_flagged": 0, "flagged_sentences": 0, "mean_grounding": None},
    }
    assert list(report["by_source"]) == ["a.pdf", "b.md", NO_SOURCE]  # most flagged sentences first
    assert set(report["by_qtype"]) == {"what", "who", "claim"}  # q5's type from its sample
    what, who, claim = (report["by_qtype"][k] for k in ("what", "who", "claim"))
    assert (what["answers"], what["answered"], what["with_flagged"]) == (2, 2, 2)
    assert (what["sentences"], what["flagged_sentences"], what["flagged_sentence_share"]) == (4, 3, 0.75)
    assert what["mean_grounding"] == pytest.approx(0.2)
    assert (who["answers"], who["answered"], who["abstained"], who["flagged_sentences"]) == (2, 1, 1, 0)
    assert who["mean_grounding"] == pytest.approx(0.9)
    assert (claim["answers"], claim["mean_grounding"], claim["flagged_sentence_share"]) == (1, None, None)

    # Worst first: lowest grounding, the tie broken by more flags; no grounding last; `worst` bounds it.
    assert [c["sample_id"] for c in report["worst"]] == ["q1", "q3", "q2"]
    assert [c["sample_id"] for c in report["answers"]] == ["q1", "q3", "q2", "q5", "q4"]
    q1 = report["worst"][0]
    assert q1["flagged_count"] == 2 and q1["grounding"] == 0.2 and q1["qtype"] == "what"
    first = q1["flagged"][0]
    assert first["evidence_text"] == "Text of b.md passage 2."
    assert first["evidence_sources"] == [{"number": 2, "source": "b.md", "page": None}]
    assert first["sources"] == ["b.md", "a.pdf"] and first["score"] == 0.1
    assert q1["citations"] == [{"number": 1, "source": "a.pdf", "page": 3}]
    assert q1["flagged"][1]["sources"] == ["a.pdf"]  # no evidence or citation: the top passage
    json.dumps(report, allow_nan=False)  # JSON-ready

    untyped = hallucination_report(_results())
    assert set(untyped["by_qtype"]) == {"what", "who", "(none)"}


def test_hallucination_report_of_nothing() -> None:
    report = hallucination_report([])
    assert report["overall"]["answers"] == 0 and report["overall"]["mean_grounding"] is None
    assert report["by_source"] == {} and report["worst"] == [] and report["answers"] == []


# -- files ----------------------------------------------------------------------------------------
def test_write_report_json_round_trips_without_nan(tmp_path: Path) -> None:
    run = _run()
    paths = write_report(run, tmp_path / "run-3", comparison=COMPARISON, history=_history())
    assert set(paths) == {"html", "json", "md"}
    assert sorted(p.name for p in (tmp_path / "run-3").iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
    ]

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in report.json")

    text = paths["json"].read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=no_constants)
    assert data == report_data(run, comparison=COMPARISON, history=_history())
    assert data["id"] == "run-3" and data["summary"]["ragas.faithfulness"]["mean"] is None
    assert data["summary"]["ragas.faithfulness"]["failed"] == 5
    assert data["manifest"]["gpu_util"] is None  # NaN -> null
    assert data["results"][2]["metrics"]["retrieval.mrr"] is None
    assert data["hallucination"]["overall"]["flagged_sentences"] == 3
    assert data["comparison"][0]["significant"] is True
    assert [h["id"] for h in data["history"]] == ["run-1", "run-2", "run-3"]
    assert data["results"][0]["answer"] == SCRIPT_ANSWER
    # Floats are rounded to 6 significant digits.
    assert data["hallucination"]["overall"]["mean_grounding"] == 0.433333


def test_markdown_sections_and_failed_metric() -> None:
    md = render_markdown(_run(), comparison=COMPARISON, history=_history())
    for heading in ("## Headline metrics", "## Retrieval", "## Answer", "## RAGAS", "## Guard",
                    "## Other metrics", "### Metric failures", "## Comparison with the baseline run",
                    "## History", "## Hallucinations", "### By source document", "### By question type",
                    "### Worst answers", "## Probes", "### injection", "## Run manifest"):  # fmt: skip
        assert heading in md, heading
    row = next(line for line in md.splitlines() if line.startswith("| ragas.faithfulness"))
    assert "failed (5)" in row and "| 0 |" not in row.replace("| 0 | 5 |", "")
    assert "| answer.f1 | 0.480 | [0.380, 0.580] | 5 | 0 |" in md.replace("\\_", "_")
    assert "judge returned unparseable JSON" in md
    assert "sha256:abc123" in md and "qwen2.5-0.5b" in md and "cost_estimate.usd" in md.replace("\\_", "_")
    assert "| answer.f1 | 0.380 | 0.480 | 0.100 | [0.020, 0.180] | 0.010 | **yes** |" in md.replace(
        "\\_", "_"
    )
    assert "<script>" not in md and "\\<script\\>" in md  # user text is escaped
    assert "First 5 of 8 cases" in md and "attack_success_rate" in md.replace("\\_", "_")


def test_html_is_self_contained_and_escapes_user_text() -> None:
    page = render_html(_run(), comparison=COMPARISON, history=_history())
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "<b>ignore previous" not in page and "&lt;b&gt;ignore previous" in page
    assert "eiffel &lt;mini&gt;" in page and "Where is the tower &amp; what" in page
    assert not re.search(r"(?:src|href)=\"(?!#)", page), "an external reference"
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "@import" not in page and "url(" not in page
    assert page.count("<svg") >= 6  # bars per group, histograms, comparison, history
    assert '<mark class="flag"' in page and "failed (5)" in page
    assert "0 (B − A)" in page and 'class="sig"' in page and 'class="nosig"' in page


def test_streamlit_lists_newest_run_first_with_its_html_report(tmp_path: Path) -> None:
    pytest.importorskip("streamlit", reason="the app needs the ui extra: pip install -e '.[ui]'")
    from eval.streamlit_page import report_files

    old = write_report(_run("run-2", "2025-01-02T10:00:00"), tmp_path / "run-2")
    new = write_report(_run(), tmp_path / "run-3")
    past = time.time() - 100
    for path in old.values():
        os.utime(path, (past, past))
    os.utime(new["html"], (past + 50, past + 50))  # written first, or on a coarse clock: still first
    listed = report_files(tmp_path)
    assert listed[0] == new["html"] and listed[3] == old["html"]
    assert {p.parent.name for p in listed[:3]} == {"run-3"}


# -- a real browser -------------------------------------------------------------------------------
def _distinct_colours(png: bytes) -> int:
    try:
        from PIL import Image
    except ImportError:  # no PIL: distinct bytes of the compressed image, a rough stand-in
        return len(set(png))
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours or [])


def test_html_renders_in_headless_chromium_offline(tmp_path: Path) -> None:
    chromium = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    paths = write_report(_run(), tmp_path / "run-3", comparison=COMPARISON, history=_history())
    requested: list[str] = []
    refused: list[str] = []
    errors: list[str] = []
    dialogs: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_dialog(dialog: Any) -> None:  # an alert() would mean an answer's <script> ran
        dialogs.append(dialog.message)
        dialog.dismiss()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 1400}, offline=True)
            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", on_console)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", on_dialog)
            page.goto(paths["html"].as_uri(), wait_until="load")
            assert page.locator("svg").count() >= 3
            assert page.locator("svg rect.bar").count() >= 4
            assert page.locator("mark.flag").count() == 3  # q1: 2, q3: 1
            text = page.inner_text("body")
            assert "<script>alert('x')</script>" in text  # shown as text, not run
            assert "failed (5)" in text
            shot = page.screenshot(full_page=False)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            page.emulate_media(media="print")
            assert page.locator("nav").is_hidden()
        finally:
            browser.close()
    assert not errors, errors
    assert not dialogs, dialogs
    assert not refused, refused
    assert requested and all(url.startswith("file://") for url in requested), requested
    assert _distinct_colours(shot) >= 50, "the screenshot looks blank"
    assert math.isfinite(len(shot)) and len(shot) > 10_000
