"""Loaders on the real sample documents in ../shared/data/formats, plus small files built here."""

from __future__ import annotations

import codecs
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from indexes.encoding import decode_bytes
from indexes.loaders import SUPPORTED_EXTENSIONS, load_document
from rag_app.documents import LoadedDocument
from rag_app.errors import DocumentError, UnsupportedFormatError

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Every supported file in the sample folder: the format it loads as, or the reason it fails.
EXPECTED = {
    "LICENSE-unstructured-example-docs.md": "markdown",
    "SOURCE.md": "markdown",
    "a1977-backus-p21.pdf": "pdf",
    "codeblock.md": "markdown",
    "docx-tables.docx": "docx",
    "empty.xlsx": DocumentError("", "no text found"),
    "example-10k-1p.html": "html",
    "example-steelJIS-datasheet-utf-16.html": "html",
    "example-with-scripts.html": "html",
    "fake-doc.rtf": "rtf",
    "fake-email.eml": "eml",
    "fake-html-cp1252.html": "html",
    "fake-memo.pdf": "pdf",
    "fake-power-point-malformed.pptx": "pptx",  # odd, but python-pptx reads its one slide
    "fake.docx": "docx",
    "handbook-1p.docx": "docx",
    "invalid-pdf-structure-pdfminer-one-page.pdf": "pdf",  # pdfminer chokes; pdfium reads both pages
    "korean-text-with-tables.pdf": "pdf",
    "layout-parser-paper-fast.pdf": "pdf",
    "multi-column-2p.pdf": "pdf",
    "norwich-city.txt": "text",
    "password.pdf": DocumentError("", "encrypted PDF (password required)"),
    "password_protected.xlsx": DocumentError("", "encrypted XLSX (password required)"),
    "rotated-page-90.pdf": "pdf",
    "sample-presentation.pptx": "pptx",
    "simple.odt": "odt",
    "stanley-cups.xlsx": "xlsx",
    "umlauts-non-utf8.md": "markdown",
    "winter-sports.epub": "epub",
}


def sample(name: str) -> Path:
    """A file from the sample folder; skips the test when the folder is absent."""
    if not FORMATS.is_dir():
        pytest.skip(f"sample documents not available: {FORMATS} is absent (see ../shared/data/README.md)")
    path = FORMATS / name
    if not path.exists():
        pytest.skip(f"sample document {path} is absent")
    return path


def load(name: str) -> LoadedDocument:
    return load_document(sample(name))


def headings(doc: LoadedDocument) -> list[str]:
    return [s.text for s in doc.sections if s.kind == "heading"]


# --- every sample file --------------------------------------------------------------------


def test_expected_table_covers_the_sample_folder() -> None:
    sample("SOURCE.md")
    present = {p.name for p in FORMATS.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS}
    assert present == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_loads_or_fails_clearly(name: str) -> None:
    expected = EXPECTED[name]
    path = sample(name)
    if isinstance(expected, DocumentError):
        with pytest.raises(DocumentError) as info:
            load_document(path)
        assert info.value.reason == expected.reason
        assert info.value.path == str(path)
        return
    doc = load_document(path)
    assert doc.format == expected
    assert doc.source == str(path)
    assert doc.sections
    json.dumps(doc.metadata)  # JSON-serialisable
    for section in doc.sections:
        assert section.text.strip()
        assert section.kind in ("text", "heading", "code", "table")
        assert not CONTROL.search(section.text), section.text[:80]
        assert "\ufffd" not in section.text


# --- PDF ----------------------------------------------------------------------------------


def test_pdf_sections_carry_page_numbers() -> None:
    doc = load("multi-column-2p.pdf")
    assert doc.metadata["page_count"] == 2
    assert {s.page for s in doc.sections} == {1, 2}
    pages = [s.page or 0 for s in doc.sections]
    assert pages == sorted(pages)  # reading order
    assert "Dense Passage Retrieval" in doc.sections[0].text
    assert "efficient passage retrieval" in doc.text  # pdfium's hyphenation mark is resolved


def test_pdf_metadata_and_single_page() -> None:
    doc = load("fake-memo.pdf")
    assert doc.metadata["title"] == "fake-memo"
    assert all(s.page == 1 for s in doc.sections)
    assert "20,000 bottles of water" in doc.text


def test_pdf_korean_text() -> None:
    assert "삼성카드" in load("korean-text-with-tables.pdf").text


def test_broken_pdf_is_a_document_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")
    with pytest.raises(DocumentError, match="not a valid PDF"):
        load_document(bad)


# --- HTML and encodings -------------------------------------------------------------------


def test_html_cp1252_headings_and_pre() -> None:
    doc = load("fake-html-cp1252.html")
    assert doc.metadata["encoding"] == "cp1252"
    assert doc.sections[0].kind == "heading" and doc.sections[0].text == "My First Heading"
    assert doc.sections[1].heading_path == ("My First Heading",)
    code = next(s for s in doc.sections if s.kind == "code")
    for word in ("schöne", "köstlich", "15,50 €", "L'été", "niño", "señora", "köttbullar", "João"):
        assert word in code.text
    assert code.text.count("\n") == 5  # <pre> keeps its lines


def test_html_utf16_with_lying_meta_charset() -> None:
    doc = load("example-steelJIS-datasheet-utf-16.html")
    assert doc.metadata["encoding"].startswith("utf-16")
    assert doc.metadata["title"].startswith("SNB22-3 - SteelJIS")
    assert "日本語" in doc.text and "成分" in doc.text
    table = next(s for s in doc.sections if s.kind == "table" and s.text.startswith("C | Si | Mn"))
    assert "0.39 - 0.46" in table.text
    assert table.heading_path[-1] == "SNB22-3 Chemical composition, standards and properties"


def test_html_drops_scripts_styles_and_navigation() -> None:
    doc = load("example-with-scripts.html")
    assert doc.metadata["title"].startswith("Russian Offensive Campaign Assessment")
    assert headings(doc)[0] == "Russian Offensive Campaign Assessment, December 13"
    for junk in ("function(", "getElementById", "window.", "{display"):
        assert junk not in doc.text
    assert "Belarusian forces remain unlikely to attack Ukraine" in doc.text


def test_html_structure(tmp_path: Path) -> None:
    page = tmp_path / "page.htm"
    page.write_text(
        "<html><head><title>T</title><style>p{}</style></head><body><header>Site name</header>"
        "<nav>Home | About</nav><article><header><h1>Guide</h1></header><p>Intro   text<br>second line</p>"
        "<h2>Install</h2><pre>  pip install x\n    --flag</pre>"
        "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2<script>x()</script></td></tr></table>"
        "<h2>Use</h2><ul><li>one</li><li>two</li></ul></article><footer>(c) me</footer></body></html>",
        encoding="utf-8",
    )
    doc = load_document(page)
    got = [(s.kind, s.text, s.heading_path) for s in doc.sections]
    assert got == [
        ("heading", "Guide", ()),
        ("text", "Intro text\nsecond line", ("Guide",)),
        ("heading", "Install", ("Guide",)),
        ("code", "  pip install x\n    --flag", ("Guide", "Install")),
        ("table", "a | b\n1 | 2", ("Guide", "Install")),
        ("heading", "Use", ("Guide",)),
        ("text", "one", ("Guide", "Use")),
        ("text", "two", ("Guide", "Use")),
    ]
    assert doc.metadata["title"] == "T"


def test_html_meta_charset_is_respected(tmp_path: Path) -> None:
    page = tmp_path / "latin.html"
    page.write_bytes('<meta charset="iso-8859-1"><p>Grüße aus Köln</p>'.encode("latin-1"))
    assert load_document(page).text == "Grüße aus Köln"
    lying = tmp_path / "lying.html"
    lying.write_bytes('<meta charset="iso-8859-1"><p>Grüße aus Köln</p>'.encode())
    assert load_document(lying).text == "Grüße aus Köln"


def test_empty_html_has_no_text(tmp_path: Path) -> None:
    (tmp_path / "e.html").write_text("<html><body><script>x</script></body></html>")
    with pytest.raises(DocumentError, match="no text found"):
        load_document(tmp_path / "e.html")


def test_non_utf8_markdown_umlauts() -> None:
    doc = load("umlauts-non-utf8.md")
    assert headings(doc) == ["können"]
    assert "äöüß" in doc.text
    assert doc.sections[-1].heading_path == ("können",)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (codecs.BOM_UTF8 + "Grüße".encode(), "utf-8-sig"),
        ("\ufeffGrüße".encode("utf-16-le"), "utf-16-le"),
        ("\ufeffGrüße".encode("utf-16-be"), "utf-16-be"),
        ("\ufeffGrüße".encode("utf-32-le"), "utf-32-le"),
        ("Grüße".encode(), "utf-8"),
        ("Die schöne Grüße für Jürgen, 15,50 €".encode("cp1252"), "cp1252"),
    ],
)
def test_decode_bytes(data: bytes, encoding: str) -> None:
    text, name = decode_bytes(data)
    assert name == encoding
    assert text.startswith("Gr") or text.startswith("Die schöne")
    assert "ü" in text and "\ufeff" not in text


def test_decode_bytes_never_raises() -> None:
    for data in (b"", bytes(range(256)), b"\xff\xfe\x00", b"\x81\x8d\x8f\x90\x9d" * 3):
        text, name = decode_bytes(data)
        assert isinstance(text, str) and name


# --- Markdown, reStructuredText, plain text ----------------------------------------------


def test_markdown_code_blocks_keep_whitespace() -> None:
    doc = load("codeblock.md")
    assert headings(doc) == ["HTML Example", "XML Example"]
    code = [s for s in doc.sections if s.kind == "code"]
    assert len(code) == 3
    assert code[0].heading_path == ("HTML Example",)
    assert '    <meta charset="UTF-8">' in code[0].text
    assert code[1].text.startswith("<note>\n    <to>Tove</to>")


def test_markdown_structure(tmp_path: Path) -> None:
    md = tmp_path / "guide.markdown"
    md.write_text(
        "---\ntitle: The Guide\n---\n"
        "Guide\n=====\n\nSome  intro\x00 with a [link](http://x).\n\n"
        "## Install ##\n\n```bash\npip install x\n\n  rag-app --help\n```\n\n"
        "### Deep\n\n    indented code\n      more\n\n"
        "Usage\n-----\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n- one\n- two\n\n***\n\n#not a heading\n",
        encoding="utf-8",
    )
    doc = load_document(md)
    got = [(s.kind, s.text, s.heading_path) for s in doc.sections]
    assert got == [
        ("heading", "Guide", ()),
        ("text", "Some intro with a link.", ("Guide",)),
        ("heading", "Install", ("Guide",)),
        ("code", "pip install x\n\n  rag-app --help", ("Guide", "Install")),
        ("heading", "Deep", ("Guide", "Install")),
        ("code", "indented code\n  more", ("Guide", "Install", "Deep")),
        ("heading", "Usage", ("Guide",)),
        ("table", "a | b\n1 | 2", ("Guide", "Usage")),
        ("text", "- one\n- two", ("Guide", "Usage")),
        ("text", "#not a heading", ("Guide", "Usage")),
    ]
    assert doc.metadata["title"] == "The Guide"


def test_rst_structure(tmp_path: Path) -> None:
    rst = tmp_path / "doc.rst"
    rst.write_text(
        "=====\nTitle\n=====\n\nIntro.\n\nSection\n-------\n\nExample::\n\n    x = 1\n      y = 2\n\n"
        "Sub\n~~~\n\n.. code-block:: python\n   :linenos:\n\n   print('hi')\n\nOther\n-------\n\nText.\n",
        encoding="utf-8",
    )
    doc = load_document(rst)
    got = [(s.kind, s.text, s.heading_path) for s in doc.sections]
    assert got == [
        ("heading", "Title", ()),
        ("text", "Intro.", ("Title",)),
        ("heading", "Section", ("Title",)),
        ("text", "Example:", ("Title", "Section")),
        ("code", "x = 1\n  y = 2", ("Title", "Section")),
        ("heading", "Sub", ("Title", "Section")),
        ("code", "print('hi')", ("Title", "Section", "Sub")),
        ("heading", "Other", ("Title",)),
        ("text", "Text.", ("Title", "Other")),
    ]


def test_plain_text_paragraphs() -> None:
    doc = load("norwich-city.txt")
    assert doc.format == "text" and doc.metadata["encoding"] == "utf-8"
    assert "Iwan Roberts" in doc.sections[0].text


def test_whitespace_only_text_has_no_text(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text(" \n\t\n\x00\n")
    with pytest.raises(DocumentError, match="no text found"):
        load_document(tmp_path / "blank.txt")


# --- Office formats -----------------------------------------------------------------------


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Guide", level=1)
    document.add_paragraph("Intro   paragraph.")
    document.add_heading("Install", level=2)
    document.add_paragraph("Run the installer.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("name", "value"), ("size", "3")]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    document.add_heading("Next", level=1)
    document.core_properties.title = "My Guide"
    path = tmp_path / "guide.docx"
    document.save(str(path))

    doc = load_document(path)
    got = [(s.kind, s.text, s.heading_path) for s in doc.sections]
    assert got == [
        ("heading", "Guide", ()),
        ("text", "Intro paragraph.", ("Guide",)),
        ("heading", "Install", ("Guide",)),
        ("text", "Run the installer.", ("Guide", "Install")),
        ("table", "name | value\nsize | 3", ("Guide", "Install")),
        ("heading", "Next", ()),
    ]
    assert doc.metadata["title"] == "My Guide"


def test_docx_sample_tables() -> None:
    doc = load("docx-tables.docx")
    tables = [s.text for s in doc.sections if s.kind == "table"]
    assert tables[0] == "Header Col 1 | Header Col 2\nLorem ipsum | A link example"
    assert len(tables) == 3


def test_corrupt_office_files(tmp_path: Path) -> None:
    for name, reason in (
        ("bad.docx", "not a valid DOCX (zip archive is corrupt)"),
        ("bad.pptx", "not a valid PPTX (zip archive is corrupt)"),
        ("bad.xlsx", "not a valid XLSX (zip archive is corrupt)"),
        ("bad.odt", "not a valid ODT (zip archive is corrupt)"),
        ("bad.epub", "not a valid EPUB (zip archive is corrupt)"),
    ):
        (tmp_path / name).write_bytes(b"PK\x03\x04 this is not really a zip" * 10)
        with pytest.raises(DocumentError) as info:
            load_document(tmp_path / name)
        assert info.value.reason == reason


def test_pptx_slides_are_pages() -> None:
    doc = load("sample-presentation.pptx")
    assert doc.metadata["page_count"] == 4
    assert {s.page for s in doc.sections} == {1, 2, 3, 4}
    assert headings(doc)[:2] == ["Title Slide", "This is the first content slide"]
    table = next(s for s in doc.sections if s.kind == "table")
    assert table.page == 4 and "1 | A1 | B1 | C1" in table.text
    assert table.heading_path == ("This is kinda backwards, huh?",)


def test_xlsx_sheets() -> None:
    doc = load("stanley-cups.xlsx")
    assert doc.metadata["sheets"] == ["Stanley Cups", "Stanley Cups Since 67"]
    assert [s.heading_path for s in doc.sections] == [("Stanley Cups",), ("Stanley Cups Since 67",)]
    assert all(s.kind == "table" for s in doc.sections)
    assert "Maple Leafs | TOR | 13" in doc.sections[0].text


def test_odt_headings() -> None:
    doc = load("simple.odt")
    assert headings(doc) == ["These are a few of my favorite things:"]
    assert doc.sections[-1].heading_path == ("These are a few of my favorite things:",)
    assert "This is my third thought." in doc.text


# --- e-mail, e-book, RTF, JSON, CSV --------------------------------------------------------


def test_eml_headers_and_plain_body() -> None:
    doc = load("fake-email.eml")
    assert doc.metadata["subject"] == "Test Email"
    assert doc.metadata["from"].startswith("Matthew Robinson")
    assert doc.sections[0].text.startswith("Subject: Test Email\nFrom: Matthew Robinson")
    assert "Roses are red" in doc.text
    assert "<div" not in doc.text


def test_eml_html_only_body(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_text(
        "Subject: Hi\nFrom: a@b.c\nContent-Type: text/html; charset=utf-8\n\n"
        "<html><body><h1>News</h1><p>Grüße</p><script>x</script></body></html>\n"
    )
    doc = load_document(eml)
    assert [s.text for s in doc.sections] == ["Subject: Hi\nFrom: a@b.c", "News", "Grüße"]


def test_epub_chapters_in_spine_order() -> None:
    doc = load("winter-sports.epub")
    assert doc.metadata["title"] == "Winter Sports in Switzerland"
    assert doc.metadata["author"] == "E. F. Benson"
    assert doc.metadata["chapters"] >= 5
    assert len(headings(doc)) > 5
    text = doc.text
    assert (
        0 <= text.index("START OF THE PROJECT GUTENBERG EBOOK") < text.index("END OF THE PROJECT GUTENBERG")
    )


def test_rtf_paragraphs_and_table() -> None:
    doc = load("fake-doc.rtf")
    assert doc.sections[0].text == "My First Heading"
    table = next(s for s in doc.sections if s.kind == "table")
    assert table.text == "Column 1 | Column 2\nRow 1, Cell 1 | Row 1, Cell 2\nRow 2, Cell 1 | Row 2, Cell 2"


def test_json_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps({"name": "x", "tags": ["a", "b"], "meta": {"n": 1, "ok": True}})
    )
    doc = load_document(tmp_path / "a.json")
    assert doc.format == "json"
    assert [s.text for s in doc.sections] == ["name: x", "tags[0]: a\ntags[1]: b", "meta.n: 1\nmeta.ok: true"]
    (tmp_path / "b.jsonl").write_text('{"q": "one"}\nnot json\n\n{"q": "two", "a": [1]}\n')
    doc = load_document(tmp_path / "b.jsonl")
    assert [s.text for s in doc.sections] == ["q: one", "q: two\na[0]: 1"]
    assert doc.metadata["invalid_lines"] == 1
    (tmp_path / "c.json").write_text("{broken")
    with pytest.raises(DocumentError, match="not valid JSON"):
        load_document(tmp_path / "c.json")


def test_csv_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("name;city\nAnna;Köln\nBo;Malmö\n", encoding="cp1252")
    doc = load_document(tmp_path / "a.csv")
    assert doc.format == "csv" and doc.sections[0].kind == "table"
    assert doc.sections[0].text == "name | city\nAnna | Köln\nBo | Malmö"
    rows = "".join(f"{i}\tv{i}\n" for i in range(100))
    (tmp_path / "b.tsv").write_text("id\tvalue\n" + rows)
    doc = load_document(tmp_path / "b.tsv")
    assert len(doc.sections) == 3  # long tables are cut, the header repeats
    assert all(s.text.startswith("id | value\n") for s in doc.sections)


# --- dispatch -----------------------------------------------------------------------------


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_bytes(b"\x00\x01")
    with pytest.raises(UnsupportedFormatError) as info:
        load_document(tmp_path / "x.xyz")
    assert info.value.reason == "unsupported file type .xyz"


def test_unreadable_file_is_a_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="not readable"):
        load_document(tmp_path / "missing.txt")


def test_supported_extensions() -> None:
    assert {
        ".pdf",
        ".html",
        ".htm",
        ".md",
        ".docx",
        ".pptx",
        ".xlsx",
        ".epub",
        ".jsonl",
    } <= SUPPORTED_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in SUPPORTED_EXTENSIONS)


def test_importing_loaders_is_light() -> None:
    heavy = [
        "lxml",
        "pypdfium2",
        "docx",
        "pptx",
        "openpyxl",
        "odf",
        "ebooklib",
        "striprtf",
        "charset_normalizer",
    ]
    code = (
        "import sys, indexes, indexes.loaders, indexes.discovery, indexes.encoding\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
