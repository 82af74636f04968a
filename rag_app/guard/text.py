"""Text handling for the guard: sentences with character spans, citation marks, normalised tokens.

Everything here is plain Python (``re`` and the Snowball stemmer from PyStemmer), fast enough to
run on every answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag_app.not_found import says_not_found

ABBREVIATIONS = frozenset(
    """
    e.g i.e etc vs al cf approx ca ed eds est dept univ
    mr mrs ms dr prof sr jr st mt ft rev gen col lt sgt capt cmdr gov sen rep pres supt
    inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    u.s u.k u.n e.u a.m p.m ph.d b.a m.a m.d d.c
    """.split()  # noqa: SIM905
)
"""Words whose trailing period does not end a sentence (lower case, without the final period)."""
NUMBER_ABBREVIATIONS = frozenset("no nos vol pp p fig figs eq eqs ref refs".split())  # noqa: SIM905
"""Abbreviations that do not end a sentence when a number follows: ``No. 5``, ``Fig. 2``."""

_BOUNDARY = re.compile(
    r"""
    [.!?]+                         # the terminal punctuation
    ["'”’)\]]*                     # closing quotes or brackets
    (?:\s*\[\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\])*   # citation marks after the period: .[1][2]
    (?=\s+["'“‘(\[]?[A-Z0-9]|\s*$) # followed by a capitalised word, a number or the end
    |
    \n\s*\n?                       # a line break (list items, paragraphs)
    """,
    re.VERBOSE,
)
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,–-]\s*\d{1,3})*)\]")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*%?|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
    let's me more most mustn't my myself nor of off on once only or other ought our ours ourselves out
    over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this those through
    to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
    where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll
    you're you've your yours yourself yourselves yes yeah oh well just really like know think sure
    great good one ones get got go going say said says told tell also may might must shall us
    s t can't will would actually however definitely absolutely unfortunately certainly indeed
    probably maybe perhaps quite pretty lot lots thing things something anything everything
    someone anyone everyone kind sort way
    """.split()  # noqa: SIM905
)
"""Function words and chat filler: ignored when asking which words of a claim the sources contain."""

COURTESY = frozenset(
    "thanks thank welcome hello hi hey bye goodbye hope helps helpful glad please sorry enjoy cheers".split()  # noqa: SIM905
)
"""Words of courtesy: a sentence of these and stop words alone ("Thanks.", "Hope this helps!") is no claim."""

NEGATIONS = frozenset("not no never nothing none nobody neither nor without cannot n't deny denied".split())  # noqa: SIM905


@dataclass(frozen=True)
class Span:
    """A sentence and its character span in the text it came from."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[Span]:
    """Sentences of ``text`` with their spans; abbreviations, initials and decimals do not split.

    Citation marks stay with their sentence, before or after its period (``... [1].`` and ``....[1][2]``).
    """
    spans: list[Span] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if match.group().startswith(".") and (
            _is_abbreviation(text, match.start()) or _is_list_number(text, match.start())
        ):
            continue
        _append(spans, text, start, end)
        start = end
    _append(spans, text, start, len(text))
    return spans


_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*(?:\d{1,3}|[a-zA-Z])$")


def _is_list_number(text: str, dot: int) -> bool:
    """True for the period of a list item's number at the start of a line (``1. Peter Davison``)."""
    return _LIST_NUMBER.search(text, max(0, dot - 8), dot) is not None


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``dot`` closes an abbreviation or an initial, not a sentence."""
    word = _WORD_BEFORE.search(text, max(0, dot - 12), dot + 1)
    if word is None:
        return False
    token = word.group(1).lower()
    if token in ABBREVIATIONS:
        return True
    if token in NUMBER_ABBREVIATIONS:
        return text[dot + 1 : dot + 3].strip()[:1].isdigit()
    return len(token) == 1 and token.isalpha() and text[word.start(1)].isupper()  # "J. Smith"


def _append(spans: list[Span], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append(Span(text[start:end], start, end))


def parse_citations(sentence: str) -> list[int]:
    """The source numbers cited in ``sentence`` (``[2]``, ``[1][3]``, ``[1, 2]``, ``[1-3]``), in order."""
    numbers: list[int] = []
    for group in _CITATION.findall(sentence):
        for part in re.split(r"\s*,\s*", group):
            bounds = [int(n) for n in re.split(r"\s*[–-]\s*", part) if n]
            if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 50:
                numbers.extend(range(bounds[0], bounds[1] + 1))
            else:
                numbers.extend(bounds)
    return list(dict.fromkeys(numbers))


def strip_citations(sentence: str) -> str:
    """``sentence`` without its ``[n]`` marks."""
    return " ".join(_CITATION.sub(" ", sentence).split())


def is_abstention(sentence: str) -> bool:
    """True for a sentence that says the sources lack the answer (it carries no claim to check)."""
    return says_not_found(sentence)


def is_question(sentence: str) -> bool:
    """True for a question (it asserts nothing)."""
    return strip_citations(sentence).rstrip().endswith("?")


def is_claim(sentence: str) -> bool:
    """True for a sentence that asserts something checkable: not a question, not an abstention,
    and with at least one content word that is not a courtesy ("Sure!" and "Thanks." are not claims)."""
    if is_question(sentence) or is_abstention(sentence):
        return False
    words = [w.lower() for w in tokens(strip_citations(sentence))]
    return any(is_content(w) and w not in COURTESY for w in words)


def tokens(text: str) -> list[str]:
    """Words and numbers, in order; numbers lose thousands separators (``1,000`` -> ``1000``)."""
    out = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0].isdigit():
            token = re.sub(r"(?<=\d),(?=\d{3}\b)", "", token)
        out.append(token.replace("’", "'"))
    return out


@lru_cache(maxsize=1)
def _stemmer() -> object:
    import Stemmer  # PyStemmer, a core dependency (also used by bm25s)

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Snowball stem of a lower-cased word; numbers stay as they are."""
    if word[0].isdigit():
        return word
    return str(_stemmer().stemWord(word))  # type: ignore[attr-defined]


def is_number(token: str) -> bool:
    """True for ``42``, ``3.5``, ``1999``, ``20%``."""
    return token[0].isdigit()


def is_content(word: str) -> bool:
    """True for a word that can carry a claim (not a stop word, not a lone letter)."""
    return word not in STOPWORDS and (len(word) > 1 or word.isdigit())
