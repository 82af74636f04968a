from __future__ import annotations

import itertools

import pytest

from indexes.chunking import Chunker
from rag_app.documents import LoadedDocument, Section


@pytest.fixture(scope="module")
def tokenizer(embedder):
    return embedder.tokenizer


def _tokens(tokenizer, text: str) -> int:
    import tokenizers

    tok = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return len(tok.encode(text).ids)


def _doc(sections: list[Section]) -> LoadedDocument:
    return LoadedDocument("doc.md", "markdown", sections)


def test_offsets_point_into_the_extracted_text(tokenizer) -> None:
    long = " ".join(f"Claim {i} says that retrieval helps generation stay grounded." for i in range(80))
    doc = _doc(
        [
            Section("Guide", kind="heading"),
            Section("A short intro paragraph.", heading_path=("Guide",)),
            Section(long, heading_path=("Guide",)),
            Section("Install", kind="heading", heading_path=("Guide",)),
            Section("pip install rag-app\nrag-app --help", kind="code", heading_path=("Guide", "Install")),
        ]
    )
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap_tokens=16).chunk(doc)
    text = doc.text
    assert len(chunks) > 5
    for i, chunk in enumerate(chunks):
        assert chunk.ordinal == i
        assert text[chunk.start : chunk.end] == chunk.text
        assert _tokens(tokenizer, chunk.text) <= 64
    assert chunks[-1].heading_path == ("Guide", "Install")
    assert chunks[-1].text.startswith("Install")  # a heading starts its chunk
    # windows over the long paragraph overlap and start at a sentence
    windows = [c for c in chunks if c.text.startswith("Claim")]
    assert len(windows) >= 3
    assert all(b.start < a.end for a, b in itertools.pairwise(windows))


def test_pages_are_never_mixed(tokenizer) -> None:
    doc = _doc([Section(f"Page {p} text.", page=p) for p in (1, 1, 2, 3)])
    chunks = Chunker(tokenizer, chunk_tokens=256, overlap_tokens=16).chunk(doc)
    assert [c.page for c in chunks] == [1, 2, 3]
    assert chunks[0].text == "Page 1 text.\n\nPage 1 text."


def test_code_is_cut_at_line_ends(tokenizer) -> None:
    code = "\n".join(f"value_{i} = compute(value_{i - 1}, factor={i})" for i in range(1, 60))
    doc = _doc([Section(code, kind="code")])
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap_tokens=8).chunk(doc)
    assert len(chunks) > 2
    for chunk in chunks[:-1]:
        assert doc.text[chunk.end : chunk.end + 1] == "\n"


def test_empty_sections_and_documents(tokenizer) -> None:
    chunker = Chunker(tokenizer)
    assert chunker.chunk(_doc([])) == []
    chunks = chunker.chunk(_doc([Section("   "), Section("Real text here.")]))
    assert [c.text for c in chunks] == ["Real text here."]


def test_overlap_must_be_small(tokenizer) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(tokenizer, chunk_tokens=64, overlap_tokens=40)
