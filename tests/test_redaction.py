"""PII redaction at ingest (indexes/redaction.py): real Presidio, the real pipeline, real SQLite and BM25.

What is checked: typed placeholders consistent within a document and numbered afresh in the next;
checksums (a card number failing Luhn, an IBAN failing mod-97 are left alone); the original values
absent from every byte of the index folder (SQLite and its WAL, the BM25 files, FAISS) while the
placeholders are searchable; the report's counts; switching redaction on re-ingests unchanged files;
``--redact-pii`` on the CLI; and that nothing of Presidio is imported unless redaction is on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("presidio_analyzer", reason="PII redaction needs the pii extra: pip install -e '.[pii]'")

from indexes.redaction import Redactor
from rag_app.documents import LoadedDocument, Section
from rag_app.rag import RAG

ROOT = Path(__file__).resolve().parents[1]

CARD = "4111 1111 1111 1111"  # passes Luhn
BAD_CARD = "4111 1111 1111 1112"  # fails it
IBAN = "DE89 3704 0044 0532 0130 00"  # passes mod-97
BAD_IBAN = "DE88 3704 0044 0532 0130 00"
MEMO = (
    "Memo from Dr. Okonkwo to Anna M. Kowalski about the harbour survey.\n\n"
    "Anna Kowalski can be reached at anna.kowalski@example.org or +44 20 7946 0958. "
    f"The deposit was paid with card {CARD}; the card {BAD_CARD} on the old form is invalid. "
    f"Refunds go to IBAN {IBAN} (not {BAD_IBAN}, which has a wrong checksum).\n\n"
    "The survey server 203.0.113.77 and 2001:db8::17 logged the upload. Kowalski wrote back to "
    "anna.kowalski@example.org the next morning."
)
ORIGINALS = [
    "Okonkwo", "Kowalski", "anna.kowalski@example.org", "7946 0958", CARD, CARD.replace(" ", ""),
    IBAN, IBAN.replace(" ", ""), "203.0.113.77", "2001:db8::17",
]  # fmt: skip


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    r = Redactor()
    r.warm_up()
    return r


def _doc(source: str, *sections: str, **metadata: str) -> LoadedDocument:
    return LoadedDocument(source, "txt", [Section(t) for t in sections], dict(metadata))


def test_placeholders_are_typed_consistent_within_a_document_and_restart_per_document(
    redactor: Redactor,
) -> None:
    counts: dict[str, int] = {}
    doc = _doc(
        "a.txt",
        "Write to Jan van Dijk at jan@example.com or ring +49 30 901820.",
        "Again: jan@example.com. Van Dijk agreed; Maria Rossi did not. Jan van Dijk signed.",
        author="Maria Rossi",
    )
    out = redactor.redact(doc, counts)
    first, second = (s.text for s in out.sections)
    assert first == "Write to <PERSON_1> at <EMAIL_1> or ring <PHONE_1>."
    assert second == "Again: <EMAIL_1>. Van <PERSON_1> agreed; <PERSON_2> did not. <PERSON_1> signed."
    assert out.metadata == {"author": "<PERSON_2>"}  # the same person in metadata: the same placeholder
    assert counts == {"PERSON": 5, "EMAIL": 2, "PHONE": 1}
    # offsets stay consistent: the document's text is its redacted sections joined
    assert out.text == first + "\n\n" + second

    other = redactor.redact(_doc("b.txt", "Ask Maria Rossi: rossi.m@example.it"), counts)
    assert other.sections[0].text == "Ask <PERSON_1>: <EMAIL_1>"  # numbered afresh in each document
    assert counts == {"PERSON": 6, "EMAIL": 3, "PHONE": 1}


def test_checksums_decide_cards_and_ibans(redactor: Redactor) -> None:
    text = f"card {CARD} bad {BAD_CARD} iban {IBAN} bad {BAD_IBAN} ip 10.1.2.3 not 999.1.2.3"
    assert redactor.redact_text(text) == (
        f"card <CREDIT_CARD_1> bad {BAD_CARD} iban <IBAN_1> bad {BAD_IBAN} ip <IP_ADDRESS_1> not 999.1.2.3"
    )
    # separators do not make another value: the same card, written twice, one placeholder
    assert redactor.redact_text(f"{CARD} = {CARD.replace(' ', '-')}") == "<CREDIT_CARD_1> = <CREDIT_CARD_1>"


def test_names_found_and_the_documented_misses(redactor: Redactor) -> None:
    assert redactor.redact_text("Prof. Nakamura met Sofia Lindqvist.") == "Prof. <PERSON_1> met <PERSON_2>."
    # misses the module docstring names: a lone given name never seen with a surname, lower case,
    # surname first, a given name in none of the lists without an honorific
    for missed in ("Sofia said yes.", "ask sofia lindqvist", "LINDQVIST, Sofia", "Thandiwe Nakamura"):
        assert redactor.redact_text(missed) == missed


def _index_bytes(index: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(index.rglob("*")) if p.is_file())


def test_ingest_stores_no_original_and_reports_counts(settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "memo.txt").write_text(MEMO, encoding="utf-8")
    (docs / "plain.txt").write_text("The tide tables for March are attached.", encoding="utf-8")
    index = tmp_path / "index"

    plain = RAG(index, settings, embedder=embedder).ingest([docs])
    assert plain.files_ingested == 2 and plain.pii_redacted == {}
    assert b"Kowalski" in _index_bytes(index)  # without redaction the name is stored

    redacting = settings.model_copy(deep=True)
    redacting.index.redact_pii = True
    rag = RAG(index, redacting, embedder=embedder)
    report = rag.ingest([docs])
    # switching redaction on re-ingests files whose content did not change
    assert report.files_ingested == 2 and report.files_unchanged == 0
    assert report.pii_redacted == {
        "PERSON": 4, "EMAIL": 2, "PHONE": 1, "CREDIT_CARD": 1, "IBAN": 1, "IP_ADDRESS": 2,
    }, report.pii_redacted  # fmt: skip
    assert report.to_dict()["pii_redacted"] == report.pii_redacted  # in --json too
    assert rag.ingest([docs]).files_unchanged == 2  # and then it is unchanged again

    stored = _index_bytes(index)
    for value in ORIGINALS:
        for form in {value, value.lower()}:
            assert form.encode() not in stored, f"{form!r} is still stored in the index"
    assert BAD_CARD.encode() in stored and BAD_IBAN.encode() in stored  # invalid numbers are kept

    hits = rag.search("who can be reached by e-mail about the harbour survey", k=3, mode="bm25")
    text = "\n".join(h.text for h in hits)
    assert "<PERSON_2> can be reached at <EMAIL_1> or <PHONE_1>" in text, text
    assert "<PERSON_2> wrote back to <EMAIL_1>" in text and "<CREDIT_CARD_1>" in text, text
    dense = rag.search("Kowalski anna.kowalski@example.org", k=3, mode="dense")
    assert all("Kowalski" not in h.text for h in dense)


def test_cli_redact_pii_flag_and_importing_the_pipeline_stays_light(
    settings, embedder, tmp_path: Path
) -> None:
    (tmp_path / "note.txt").write_text("Call Maria Rossi on +39 06 6982 0000 or maria@example.it.", "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_APP_")}
    env["RAG_APP_CACHE_DIR"] = str(settings.cache_dir)
    result = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "ingest", str(tmp_path / "note.txt"), "--index",
         str(tmp_path / "index"), "--redact-pii", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["pii_redacted"] == {"PERSON": 1, "PHONE": 1, "EMAIL": 1}

    code = (
        "import sys, indexes.pipeline, rag_app.rag; "
        "print([m for m in ('presidio_analyzer', 'spacy', 'faker') if m in sys.modules])"
    )
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert light.stdout.strip() == "[]"
