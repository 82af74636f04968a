"""From what the model wrote to what a person reads: preambles, leaked ids and question echoes cut,
the answer snapped to the exact span of the source it copies.

Small models pad a two-word answer into a sentence that repeats the question ("The theme of Super
Bowl 50 was the golden anniversary.") and start with filler ("The answer is:"). Both cost the
reader time and hide the answer, so they are cut by rule. The rules only ever remove words the
question already holds or fixed filler phrases: what remains is still the model's own text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rag_app.guard.text import stem

_PREAMBLE = re.compile(
    r"""^\s*(?:
        (?:the\s+)?(?:short\s+|final\s+|correct\s+)?answer(?:\s+to\s+(?:the|this|your)\s+question)?\s*(?:is|would\s+be)?\s*[:\-–]?\s*
      | answer\s*[:\-–]\s*
      | (?:based\s+on|according\s+to|from)\s+(?:the\s+)?(?:provided\s+|given\s+)?
          (?:sources?|documents?|context|passages?|text|information|source\s*\[\d{1,3}\])\s*(?:\[\d{1,3}\])?\s*,\s*
      | (?:sure|certainly|of\s+course)[!,.]\s*
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_SOURCE_LABEL = re.compile(r"^\s*(?:source|passage|document)\s*\[?\d{1,3}\]?\s*[:\-–]\s*", re.IGNORECASE)
_LEADING_CITATION = re.compile(r"^\s*(?:\[\d{1,3}\]\s*)+")
_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]")
_WORD = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*", re.UNICODE)
_ARTICLES = frozenset({"the", "a", "an"})
_LINKS = frozenset({"is", "was", "were", "are", "be", "been", "being", "called", "named", "known"})
"""Words that end a subject echo ("The theme of Super Bowl 50 was"): the answer follows them."""
_CONJUNCTIONS = frozenset({"and", "or", "but", "nor", "so", "then"})
_PREFIX_SYMBOLS = "$£€¥#\"“'‘("

ECHO_FILLER = frozenset(
    """a an the is was were are be been being of in on at by for to from with as that which who whom
    whose what when where why how it its this these those there called named known""".split()  # noqa: SIM905
)
"""Words that may sit between echoed question words ("... of the ... was ...") without ending the echo."""


@dataclass(frozen=True)
class CleanAnswer:
    """The answer as shown, and what was cut from the model's text."""

    text: str
    removed: tuple[str, ...] = ()
    """Pieces cut (``preamble``, ``source id``, ``question echo``), for the JSON and the logs."""


def clean_answer(text: str, question: str, source_ids: tuple[str, ...] = ()) -> CleanAnswer:
    """Cut filler before the answer, ids of sources the model copied, and the question's echo.

    ``source_ids`` are strings (file names, chunk ids) that must never appear in an answer.
    """
    removed: list[str] = []
    out = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    for pattern, label in ((_PREAMBLE, "preamble"), (_SOURCE_LABEL, "source label")):
        cut = pattern.sub("", out, count=1)
        if cut != out and cut.strip():
            out, removed = cut, [*removed, label]
    for ident in source_ids:
        if ident and len(ident) >= 4 and ident in out:
            out = out.replace(ident, "")
            removed.append("source id")
    out = re.sub(r"\(\s*\)", "", out)
    out = re.sub(r"[ \t]{2,}", " ", out).strip()
    short = shorten(out, question)
    if short != out:
        removed.append("question echo")
        out = short
    return CleanAnswer(out, tuple(removed))


def has_content(text: str) -> bool:
    """False for an answer of citation marks and punctuation only (``"[1]"``, ``"."``)."""
    return bool(_WORD.search(_CITATION.sub(" ", text)))


def shorten(answer: str, question: str) -> str:
    """A one-sentence answer without the words that only repeat the question.

    ``"The theme of Super Bowl 50 was the golden anniversary [1]."`` for "What was the theme of
    Super Bowl 50?" becomes ``"the golden anniversary [1]"``. The echo is cut from the front and
    from the back; it must hold at least two of the question's content words, and something that
    is not in the question must remain. Multi-sentence answers and lists are left alone.
    """
    marks = "".join(m.group().strip() and " " + m.group().strip() for m in _CITATION.finditer(answer))
    body = _CITATION.sub("", answer).strip()
    if not body or "\n" in body or _sentence_count(body) > 1 or _is_yes_no(question):
        return answer
    q_words = {_norm(w) for w in _WORD.findall(question)} | ECHO_FILLER
    q_content = {w for w in q_words if w not in ECHO_FILLER}
    words = list(_WORD.finditer(body))
    if len(words) < 3 or not q_content:
        return answer
    start = _echo_length(words, q_words, q_content, keep_articles=True)
    end = len(words) - _echo_length(list(reversed(words)), q_words, q_content, keep_articles=False)
    if start == 0 and end == len(words):
        return answer
    kept = words[start:end]
    if not kept or not any(_norm(w.group()) not in q_words for w in kept):
        return answer  # only the question came back: leave it for the guard to judge
    first = kept[0].start()
    while first > 0 and body[first - 1] in _PREFIX_SYMBOLS:  # "$5 million", "#3", "“golden"
        first -= 1
    while end - start > 1 and _norm(words[end - 1].group()) in _CONJUNCTIONS:  # "... pulls the oceans and"
        end -= 1
        kept = words[start:end]
    short = _balance_quotes(body[first : kept[-1].end()].strip(" ,;:-–"))
    if start > 0 and short[:1].islower():
        short = short[0].upper() + short[1:]
    return (short + marks).strip()


def _echo_length(
    words: list[re.Match[str]], q_words: set[str], q_content: set[str], *, keep_articles: bool
) -> int:
    """How many leading ``words`` repeat the question (filler allowed between them)."""
    echoed = last = 0
    for i, word in enumerate(words):
        w = _norm(word.group())
        if w in q_content:
            echoed += 1
            last = i + 1
        elif w in q_words or w in ECHO_FILLER:
            continue
        else:
            break
    if echoed < 2:
        return 0
    # the copula and prepositions after the echo go with it ("... was"); articles stay with the answer
    i = last
    linked = False
    while i < len(words) and (w := _norm(words[i].group())) in ECHO_FILLER:
        if keep_articles and w in _ARTICLES:
            break
        linked = linked or w in _LINKS
        i += 1
    linked = linked or any(_norm(word.group()) in _LINKS for word in words[:last])
    if keep_articles and not linked:
        # a front cut must hold "is", "was", "called": "The Eiffel Tower in | Paris was completed in
        # 1889" would leave a different claim
        return 0
    return i


def _sentence_count(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text) if s.strip()])


def _is_yes_no(question: str) -> bool:
    first = question.strip().split(maxsplit=1)[:1]
    return bool(first) and first[0].lower() in {
        "is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had",
        "will", "would", "should", "may", "might", "must",
    }  # fmt: skip


def _balance_quotes(text: str) -> str:
    for quote in ('"', "“", "”"):
        if text.count(quote) == 1:
            text = text.replace(quote, "")
    return text.strip()


def _norm(word: str) -> str:
    """Lower case, accents and possessive removed, stemmed: "Gospić" == "gospic", "moved" == "move"."""
    word = unicodedata.normalize("NFKD", word.lower().replace("’", "'"))
    word = "".join(c for c in word if not unicodedata.combining(c))
    word = word[:-2] if word.endswith("'s") else word
    return word if word in ECHO_FILLER or not word else stem(word)


# -- snapping to the source -------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpan:
    """Where in a source passage an answer (or its evidence) is: character offsets into the passage."""

    number: int
    """The source's ``[n]``."""
    start: int
    end: int
    exact: bool
    """True when the answer is this span verbatim (case and spacing aside)."""


def find_span(answer: str, passage: str) -> tuple[int, int] | None:
    """The character span of ``answer`` (citation marks aside) in ``passage``, case- and space-insensitive."""
    needle = _CITATION.sub("", answer).strip().strip(".;,:")
    if len(needle) < 2:
        return None
    words = [re.escape(w) for w in needle.split()]
    pattern = re.compile(r"\s+".join(words), re.IGNORECASE)
    match = pattern.search(passage)
    if match is None:
        return None
    return match.start(), match.end()
