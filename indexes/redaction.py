"""PII redaction at ingest: personal data replaced by typed placeholders before anything is stored.

Opt-in (``index.redact_pii = true`` or ``rag-app ingest --redact-pii``; the ``pii`` extra). Each
loaded document's sections, headings and string metadata are analysed with Microsoft Presidio and
every finding is replaced by a placeholder numbered per document and type (``<EMAIL_1>``,
``<PERSON_2>``): the same value gets the same placeholder everywhere in that document, so the text
still reads ("<PERSON_1> wrote to <PERSON_2>; <PERSON_1> signed"). Redaction runs before chunking, so
chunk text, offsets, BM25 and embeddings are all built from the redacted text and the original is
never written to the index.

What is found, and how (all offline; no model is downloaded):

- ``EMAIL``: Presidio's e-mail pattern, the domain checked against the public-suffix list that
  ``tldextract`` ships (never fetched).
- ``PHONE``: Presidio's phone recognizer (Google's ``phonenumbers`` matcher), international numbers
  and national ones of the regions in :data:`PHONE_REGIONS`.
- ``IBAN``: Presidio's IBAN patterns, checked with the ISO 13616 mod-97 checksum.
- ``CREDIT_CARD``: Presidio's card patterns, checked with the Luhn checksum: a number that fails it
  is left as it is.
- ``IP_ADDRESS``: IPv4 and IPv6, validated by :mod:`ipaddress`.
- ``PERSON``: a deterministic recognizer (:class:`NameRecognizer`), because Presidio's own needs a
  spaCy NER model: a given name from Faker's name lists of :data:`NAME_LOCALES` followed by a
  capitalised surname (``Anna Kowalski``, ``Anna M. Kowalski``), or an honorific followed by
  capitalised words (``Dr. Okonkwo``); then every part of a name found so appears alone later in the
  same document is redacted too (``Kowalski said``). It misses: a given name alone that never
  appeared with its surname, names whose given name is in none of those lists (many Slavic,
  Hungarian, Turkish, Romanian, Asian and Arabic names, unusual spellings: half of such names in
  ``bench/pii.py``) unless an honorific precedes them, given names kept out as words
  (:data:`NOT_GIVEN`: ``Jade Brown``, ``Grace Crawford``), names written in lower
  case or all capitals, surname-first forms (``KOWALSKI, Anna``, ``Kowalski Anna``), and single-word
  names (``Madonna``). It can also take a capitalised phrase that starts with a given name that is
  also a word, though :data:`NOT_GIVEN` keeps the commonest out. ``bench/pii.py`` measures it.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from rag_app.documents import LoadedDocument
from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from rag_app.settings import Settings

LABELS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IBAN_CODE": "IBAN",
    "CREDIT_CARD": "CREDIT_CARD",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
}
"""Presidio's entity type -> the placeholder's name (and the ingest report's key)."""

PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CH", "AT", "BE", "IE", "CA", "AU", "IN", "BR")
"""Regions whose national phone number formats are recognised (international ``+..`` ones always)."""

NAME_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "en_KE", "en_NG", "de_DE", "fr_FR", "es_ES", "es_MX",
    "it_IT", "nl_NL", "pt_PT", "pt_BR", "sv_SE", "da_DK", "no_NO",
)  # fmt: skip
"""Faker locales whose given names the name recognizer knows."""

HONORIFICS = (
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Professor", "Sir", "Dame", "Lady", "Lord", "Rev",
    "Herr", "Frau", "Mme", "Mlle", "Madame", "Monsieur", "Sr", "Sra", "Señor", "Señora", "Dott", "Sig",
)  # fmt: skip

NOT_GIVEN = frozenset(
    """
    april may june july august march summer autumn winter spring dawn will mark grant bill rose art
    hope faith joy grace chase page miles lane drew gene major long young rich ray frank sterling
    golden christian ivory crystal amber iris jade ruby pearl violet heather holly ivy sunny
    """.split()  # noqa: SIM905
)
"""Given names that are also common words: never taken as the start of a name (``Gene Expression``)."""

NOT_SURNAMES = frozenset(
    """
    a an and the of in on at to for by with from as or if is it its this that these those we our you
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december university college hospital school institute
    street road avenue company group inc ltd llc gmbh department ministry council committee bank
    church city county state national international
    """.split()  # noqa: SIM905
)
"""Capitalised words that end a name instead of continuing it (``Anna at University``)."""

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and any(c.islower() for c in word[1:])


@cache
def _given_names() -> frozenset[str]:
    """Lower-cased given names from Faker's person providers of :data:`NAME_LOCALES`."""
    names: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
            for name in getattr(provider, attr, ()) or ():
                if _WORD.fullmatch(name) and len(name) > 1:
                    names.add(name.lower())
    return frozenset(names - NOT_GIVEN)


PARTICLES = frozenset("van von der den de del della di da das dos du la le ten ter".split())  # noqa: SIM905
"""Lower-case words that may stand inside a surname (``Anna de la Cruz``, ``Jan van Dijk``)."""


def _name_recognizer_class() -> type:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class NameRecognizer(EntityRecognizer):
        """PERSON without an NER model: a known given name + a capitalised surname, or an honorific
        + capitalised words (see the module's docstring for what it misses)."""

        def __init__(self) -> None:
            super().__init__(supported_entities=["PERSON"], name="NameRecognizer", supported_language="en")

        def load(self) -> None:
            self.given = _given_names()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
            found, i = [], 0
            while i < len(words):
                word = words[i][0]
                if word in HONORIFICS and i + 1 < len(words):
                    first, last, score = i + 1, _name_end(text, words, i + 1), 0.85
                elif _capitalised(word) and word.lower() in self.given:
                    first, last, score = i, _name_end(text, words, i + 1), 0.8
                else:
                    i += 1
                    continue
                if last >= first + (0 if first > i else 1):  # a given name needs a surname after it
                    found.append(RecognizerResult("PERSON", words[first][1], words[last][2], score))
                    i = last + 1
                else:
                    i += 1
            return found

    return NameRecognizer


def _name_end(text: str, words: list[tuple[str, int, int]], k: int, most: int = 4) -> int:
    """Index of the last word of the name words that continue right after ``words[k - 1]``:
    capitalised words, initials (``M.``) and surname particles (``de la``); ``k - 1`` when none."""
    last, taken, j = k - 1, 0, k
    while j < len(words) and taken < most:
        word, start, _ = words[j]
        previous = words[j - 1][0]
        gap = text[words[j - 1][2] : start]
        after_dot = previous in HONORIFICS or (len(previous) == 1 and previous.isupper())
        if gap != " " and not (gap == ". " and after_dot):
            break
        if word in PARTICLES:  # kept only when a capitalised word follows
            j += 1
            continue
        initial = len(word) == 1 and word.isupper()
        if not initial and (word.lower() in NOT_SURNAMES or not _capitalised(word)):
            break
        last, taken, j = j, taken + 1, j + 1
    while last >= k and len(words[last][0]) == 1:
        last -= 1  # a name does not end with an initial
    return last


@dataclass
class _Placeholders:
    """One document's placeholders: the same (type, value) always gets the same ``<TYPE_n>``."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    per_type: Counter[str] = field(default_factory=Counter)
    redacted: Counter[str] = field(default_factory=Counter)

    def number(self, entity: str, value: str) -> str:
        """The placeholder of ``value`` (a new one when it is new)."""
        label = LABELS.get(entity, entity)
        key = (label, _normal(label, value))
        if key not in self.by_value:
            self.per_type[label] += 1
            self.by_value[key] = f"<{label}_{self.per_type[label]}>"
        return self.by_value[key]

    def get(self, entity: str, value: str) -> str:
        """The placeholder that replaces ``value``, counted as one redaction."""
        self.redacted[LABELS.get(entity, entity)] += 1
        return self.number(entity, value)

    def alias(self, part: str, of: str) -> None:
        """``part`` of the name ``of`` (a surname alone) gets that name's placeholder."""
        self.by_value.setdefault(("PERSON", _normal("PERSON", part)), self.number("PERSON", of))


def _normal(label: str, value: str) -> str:
    if label in ("PHONE", "CREDIT_CARD", "IBAN"):
        return re.sub(r"[^0-9A-Za-z]", "", value).upper()
    words = _WORD.findall(value) if label == "PERSON" else value.split()
    if label == "PERSON":  # "Dr. Anna M. Kowalski" is "Anna Kowalski"
        words = [w for w in words if len(w) > 1 and w not in HONORIFICS] or words
    return " ".join(words).casefold()


class Redactor:
    """Replaces personal data in loaded documents with typed placeholders (see the module docstring).

    The constructor only stores the configuration; Presidio is imported and its engines built on
    first use (:meth:`warm_up`).
    """

    def __init__(self, entities: tuple[str, ...] = tuple(LABELS)) -> None:
        unknown = sorted(set(entities) - set(LABELS))
        if unknown:
            raise ConfigError(f"unknown PII entity types {unknown}; allowed: {sorted(LABELS)}")
        self.entities = list(entities)
        self._analyzer: Any = None
        self._anonymizer: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls()

    def warm_up(self) -> None:
        if self._analyzer is not None:
            return
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_anonymizer import AnonymizerEngine
        except ImportError as exc:
            raise ConfigError(
                "PII redaction (index.redact_pii / --redact-pii) needs the pii extra: "
                "pip install 'rag-app[pii]'"
            ) from exc
        registry = RecognizerRegistry(recognizers=_recognizers(), supported_languages=["en"])
        self._analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=_blank_nlp_engine(), supported_languages=["en"]
        )
        self._anonymizer = AnonymizerEngine()

    def redact_text(self, text: str, placeholders: _Placeholders | None = None) -> str:
        """``text`` redacted on its own (one document's worth of placeholders)."""
        return self._redact([text], placeholders or _Placeholders())[0]

    def redact(self, document: LoadedDocument, counts: dict[str, int] | None = None) -> LoadedDocument:
        """A copy of ``document`` with its sections, headings and string metadata redacted.

        ``counts`` (the ingest report's ``pii_redacted``) gets the number of redactions by type.
        """
        placeholders = _Placeholders()
        headings = sorted({h for s in document.sections for h in s.heading_path})
        meta_keys = [k for k, v in document.metadata.items() if isinstance(v, str) and v]
        texts = [s.text for s in document.sections] + headings + [document.metadata[k] for k in meta_keys]
        redacted = self._redact(texts, placeholders)
        n = len(document.sections)
        heading_map = dict(zip(headings, redacted[n : n + len(headings)], strict=True))
        sections = [
            replace(s, text=t, heading_path=tuple(heading_map[h] for h in s.heading_path))
            for s, t in zip(document.sections, redacted[:n], strict=True)
        ]
        metadata = dict(document.metadata)
        metadata.update(zip(meta_keys, redacted[n + len(headings) :], strict=True))
        if counts is not None:
            for label, count in placeholders.redacted.items():
                counts[label] = counts.get(label, 0) + count
        return LoadedDocument(document.source, document.format, sections, metadata)

    def find(self, texts: list[str]) -> list[list[Any]]:
        """Presidio's findings (``RecognizerResult``) in each of one document's ``texts``, the parts of
        the names found (a surname alone) included."""
        from presidio_anonymizer.entities import RecognizerResult

        self.warm_up()
        found = [list(self._analyzer.analyze(text=t, language="en", entities=self.entities)) for t in texts]
        parts = self._name_parts(texts, found)
        if parts:
            words = "|".join(map(re.escape, sorted(parts, key=len, reverse=True)))
            alias = re.compile(rf"(?<![^\W\d_])(?:{words})(?![^\W\d_])")
            for text, results in zip(texts, found, strict=True):
                taken = [(r.start, r.end) for r in results]
                for m in alias.finditer(text):
                    if not any(a < m.end() and m.start() < b for a, b in taken):
                        results.append(RecognizerResult("PERSON", m.start(), m.end(), 0.6))
        return [
            _resolve([r for r in results if _plausible(text, r)])
            for text, results in zip(texts, found, strict=True)
        ]

    def _name_parts(self, texts: list[str], found: list[list[Any]]) -> dict[str, str]:
        """Each part of each PERSON found (``Kowalski`` of ``Anna Kowalski``) -> the name it is part of."""
        parts: dict[str, str] = {}
        for text, results in zip(texts, found, strict=True):
            for r in results:
                if r.entity_type != "PERSON":
                    continue
                name = text[r.start : r.end]
                for part in _WORD.findall(name):
                    if len(part) > 2 and _capitalised(part) and part.lower() not in NOT_GIVEN | NOT_SURNAMES:
                        parts.setdefault(part, name)
        return parts

    def _redact(self, texts: list[str], placeholders: _Placeholders) -> list[str]:
        found = self.find(texts)
        parts = self._name_parts(texts, found)
        for text, results in zip(texts, found, strict=True):  # numbered in reading order
            for r in sorted(results, key=lambda r: r.start):
                value = text[r.start : r.end]
                if r.entity_type == "PERSON" and value in parts and parts[value] != value:
                    placeholders.alias(value, parts[value])  # a name's part alone: that name's placeholder
                else:
                    placeholders.number(r.entity_type, value)
        from presidio_anonymizer.entities import OperatorConfig

        out = []
        for text, results in zip(texts, found, strict=True):
            if not results:
                out.append(text)
                continue
            operators = {
                entity: OperatorConfig("custom", {"lambda": _replacer(placeholders, entity)})
                for entity in {r.entity_type for r in results}
            }
            out.append(
                self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text
            )
        return out


def _plausible(text: str, r: Any) -> bool:
    """Drops phone findings that are parts of longer digit runs, bare runs of 12 or more digits (an
    invalid card or account number) or too short to be a phone number without a ``+`` (a confidence
    interval like ``0.67-0.75``)."""
    if r.entity_type != "PHONE_NUMBER":
        return True
    value = text[r.start : r.end]
    digits = sum(c.isdigit() for c in value)
    around = text[max(r.start - 1, 0) : r.start] + text[r.end : r.end + 1]
    if any(c.isdigit() for c in around) or (value.isdigit() and digits >= 12):
        return False
    return digits >= 8 or value.lstrip().startswith("+")


def _resolve(results: list[Any]) -> list[Any]:
    """Overlapping findings: the higher score wins, then the longer span (a card number is not also
    a phone number, an IP address not also a phone number); what remains does not overlap."""
    kept: list[Any] = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        if not any(k.start < r.end and r.start < k.end for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda r: r.start)


def _replacer(placeholders: _Placeholders, entity: str) -> Any:
    return lambda value: placeholders.get(entity, value)


def _recognizers() -> list[Any]:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    return [
        _offline_email(EmailRecognizer)(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        IbanRecognizer(),
        CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, _mastercard_2_series()]),
        IpRecognizer(),
        _name_recognizer_class()(),
    ]


def _mastercard_2_series() -> Any:
    """Mastercard's 2221-2720 range, which Presidio's card pattern lacks (Luhn-checked like the rest)."""
    from presidio_analyzer import Pattern

    return Pattern("Mastercard 2-series (weak)", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3)


def _offline_email(base: type) -> type:
    """Presidio's e-mail recognizer with the domain checked against tldextract's bundled suffix list
    (its default extractor fetches the list from the network on first use)."""
    import tldextract

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(base):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    return OfflineEmailRecognizer


def _blank_nlp_engine() -> Any:
    """Presidio's spaCy engine on a blank English pipeline: tokens only, no model to download (the
    pattern recognizers need no more; PERSON comes from :class:`NameRecognizer`)."""
    import spacy
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]  # declared None there

    engine = BlankSpacyNlpEngine()
    engine.load()
    return engine
