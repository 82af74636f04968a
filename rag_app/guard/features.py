"""Features of one claim sentence against the sources: which of its words, names, numbers and word
pairs the sources contain, how much of it the best-matching source sentences cover, and how close
its embedding is to theirs.

Sources are cut into units (sentences; long ones into windows of words) so a long article is
compared piece by piece, never truncated. Scoring is two-phase so that a batch of answers needs a
single embedding call: :func:`plan` picks the few units worth embedding for each claim (the best
lexical matches), and :func:`claim_features` turns the plan and the vectors into one feature row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from rag_app.guard.text import (
    NEGATIONS,
    STOPWORDS,
    is_content,
    split_sentences,
    stem,
    strip_citations,
    tokens,
)

FEATURES = (
    "unseen_content",  # share of the claim's content words absent from the sources
    "unseen_entity",  # share of its names and numbers absent from the sources
    "unseen_entity_count",  # how many names/numbers are absent (0..3, scaled to 0..1)
    "unseen_content_count",  # how many content words are absent (0..5, scaled to 0..1)
    "unseen_rare_count",  # how many rare content words (by the embedder's vocabulary rank) are absent (0..3)
    "unseen_common",  # share of its common content words absent (paraphrase shows here)
    "unseen_in_passages",  # share of content words absent from the passages (context ignored)
    "unseen_number",  # 1 when a number of the claim is absent
    "unseen_bigram",  # share of its word pairs absent from the sources
    "best_cover",  # share of its content words found in the single best source unit
    "top2_cover",  # ... in the best two units together
    "best_bigram_cover",  # share of its word pairs found in the best unit
    "pairs_together",  # share of pairs of its (found) content words that occur near each other in a source
    "entity_pairs_together",  # ... of such pairs that involve a name or number
    "longest_run",  # longest run of words copied from one unit, over the claim's words (capped)
    "cos_max",  # highest cosine to a candidate unit
    "cos_top3",  # mean cosine to the three closest candidates
    "negation_mismatch",  # the claim negates and its best unit does not, or the other way round
    "has_context",  # the check was given extra context (a dialogue history)
    "no_content",  # the sentence has no content word at all
    "unseen_entity_in_passages",  # share of its names and numbers absent from the passages (context ignored)
    "context_only_entity",  # names/numbers found only in the context, not the passages (0..3, scaled)
    "new_passage_entity",  # names/numbers of the passages that the context does not mention (0..3, scaled)
    "passage_entities_used",  # share of the passages' names and numbers that the claim mentions
)
CANDIDATES = 4
"""Units whose copied runs are measured per claim: the best lexical matches."""
EMBEDDED = 2
"""Of those, units embedded per claim (the embedder is most of a check's time: keep this small)."""
RARE_RANK = 8000
"""Words ranked past this in the embedder's vocabulary (or absent from it) count as rare."""
MAX_PAIR_WORDS = 24
"""Content words of a claim whose pairs are checked (the first ones; bounds the work)."""
WINDOW_WORDS = 60
"""Source sentences longer than this many words are cut into windows of this size."""

_NUMBER_NAMES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred thousand million billion"
)
_NUMBER_VALUES = [*range(21), 30, 40, 50, 60, 70, 80, 90, 100, 1000, 10**6, 10**9]
_NUMBER_WORDS = dict(zip(_NUMBER_NAMES.split(), [str(n) for n in _NUMBER_VALUES], strict=True))


@dataclass
class Bag:
    """A text's words, normalised (lower case, possessive removed, number words as digits, stemmed)."""

    stems: list[str]
    content: list[str]
    words: list[str]
    """The content words before stemming (parallel to ``content``)."""
    entities: set[str]
    numbers: set[str]
    negated: bool

    @property
    def bigrams(self) -> set[tuple[str, str]]:
        return set(zip(self.stems, self.stems[1:], strict=False))


def analyse(text: str) -> Bag:
    """Split ``text`` into normalised words and pick out its content words, names and numbers."""
    stems: list[str] = []
    content: list[str] = []
    words: list[str] = []
    entities: set[str] = set()
    numbers: set[str] = set()
    negated = False
    for i, token in enumerate(tokens(strip_citations(text))):
        low = token.lower()
        if low.endswith("'s") and len(low) > 2:
            low = low[:-2]
        if low in NEGATIONS or low.endswith("n't"):
            negated = True
        low = _NUMBER_WORDS.get(low, low)
        if low[0].isdigit():
            low = low.rstrip("%")
            low = low[:-2] if low.endswith(".0") else low
        s = stem(low)
        stems.append(s)
        if is_content(low):
            content.append(s)
            words.append(low)
        if low[0].isdigit():
            numbers.add(s)
            entities.add(s)
        elif token[0].isupper() and len(token) > 1 and low not in STOPWORDS and (i > 0 or token.isupper()):
            entities.add(s)
    return Bag(stems, content, words, entities, numbers, negated)


@dataclass
class Unit:
    """A piece of a source: a sentence (or a window of a long one) of passage ``passage``."""

    passage: int
    """Index into the passages; -1 for the context."""
    start: int
    end: int
    text: str
    bag: Bag
    stem_set: set[str] = field(default_factory=set)
    bigrams: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stem_set = set(self.bag.stems)
        self.bigrams = self.bag.bigrams


class Sources:
    """The passages (and context) of one check, cut into units with their vocabularies."""

    def __init__(
        self, passages: Sequence[str], context: str = "", rank: Mapping[str, int] | None = None
    ) -> None:
        self.passages = list(passages)
        self.rank = rank or {}
        """Word -> frequency rank (the embedder's vocabulary order); absent words count as rare."""
        self.has_context = bool(context.strip())
        self.units: list[Unit] = []
        for index, passage in enumerate(self.passages):
            self.units.extend(_units(passage, index))
        if self.has_context:
            self.units.extend(_units(context, -1))
        self._vocab: dict[tuple[frozenset[int] | None, bool], tuple[set[str], set[tuple[str, str]]]] = {}
        self._windows: dict[tuple[frozenset[int] | None, bool], dict[str, set[int]]] = {}
        self._entities: dict[tuple[frozenset[int] | None, bool], set[str]] = {}
        self.idf = _idf([u.stem_set for u in self.units])

    def in_scope(self, scope: frozenset[int] | None, context: bool = True) -> list[int]:
        """Indices of the units of the passages in ``scope`` (None: all) and of the context."""
        return [
            i
            for i, u in enumerate(self.units)
            if (u.passage >= 0 and (scope is None or u.passage in scope)) or (context and u.passage < 0)
        ]

    def windows(self, scope: frozenset[int] | None) -> dict[str, set[int]]:
        """Word -> ids of the windows (a unit and the next one of the same source) holding it."""
        key = (scope, True)
        if key not in self._windows:
            index: dict[str, set[int]] = {}
            units = self.in_scope(scope)
            for w, i in enumerate(units):
                words = self.units[i].stem_set
                if w + 1 < len(units) and self.units[units[w + 1]].passage == self.units[i].passage:
                    words = words | self.units[units[w + 1]].stem_set
                for word in words:
                    index.setdefault(word, set()).add(w)
            self._windows[key] = index
        return self._windows[key]

    def entities(self, scope: frozenset[int] | None) -> set[str]:
        """Names and numbers of the passages in ``scope`` (None: all), context excluded."""
        key = (scope, False)
        if key not in self._entities:
            self._entities[key] = set().union(
                *(self.units[i].bag.entities for i in self.in_scope(scope, False))
            )
        return self._entities[key]

    def vocabulary(
        self, scope: frozenset[int] | None, context: bool = True
    ) -> tuple[set[str], set[tuple[str, str]]]:
        """Word and word-pair sets of the units in ``scope`` (and of the context)."""
        key = (scope, context)
        if key not in self._vocab:
            words: set[str] = set()
            pairs: set[tuple[str, str]] = set()
            for i in self.in_scope(scope, context):
                words |= self.units[i].stem_set
                pairs |= self.units[i].bigrams
            self._vocab[key] = (words, pairs)
        return self._vocab[key]


def _units(text: str, passage: int) -> list[Unit]:
    units = []
    for span in split_sentences(text):
        words = span.text.split()
        if len(words) <= WINDOW_WORDS:
            units.append(Unit(passage, span.start, span.end, span.text, analyse(span.text)))
            continue
        step = WINDOW_WORDS * 3 // 4
        offsets = _word_offsets(span.text)
        for first in range(0, max(1, len(words) - WINDOW_WORDS // 4), step):
            last = min(len(words), first + WINDOW_WORDS)
            a, b = offsets[first][0], offsets[last - 1][1]
            piece = span.text[a:b]
            units.append(Unit(passage, span.start + a, span.start + b, piece, analyse(piece)))
    return units


def _word_offsets(text: str) -> list[tuple[int, int]]:
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def _idf(sets: list[set[str]]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for words in sets:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    n = len(sets)
    return {w: math.log(1.0 + n / c) for w, c in counts.items()}


@dataclass
class Plan:
    """One claim against one scope of the sources: lexical facts and the units to embed."""

    claim: str
    bag: Bag
    scope: frozenset[int] | None
    candidates: list[int]
    """Unit indices, best lexical match first."""
    lexical: dict[str, float]


def plan(claim: str, sources: Sources, scope: frozenset[int] | None = None) -> Plan:
    """Compute the lexical features of ``claim`` and choose its candidate units."""
    bag = analyse(claim)
    words, pairs = sources.vocabulary(scope)
    units = sources.in_scope(scope)
    content = set(bag.content)
    idf = sources.idf
    ranked = sorted(units, key=lambda i: -sum(idf.get(w, 0.0) for w in content & sources.units[i].stem_set))
    best = _best_cover(content, [sources.units[i].stem_set for i in units])
    best_unit = sources.units[units[best[0]]] if units and best[0] >= 0 else None
    claim_pairs = bag.bigrams
    in_passages = sources.vocabulary(scope, context=False)[0]
    in_context = sources.vocabulary(frozenset(), context=True)[0]
    passage_entities = sources.entities(scope)
    lexical = {
        "unseen_content": _share_missing(content, words),
        "unseen_entity": _share_missing(bag.entities, words),
        "unseen_entity_count": min(3, len(bag.entities - words)) / 3.0,
        "unseen_content_count": min(5, len(content - words)) / 5.0,
        **_rarity(bag, words, sources.rank),
        "unseen_in_passages": _share_missing(content, in_passages),
        "unseen_number": float(bool(bag.numbers - words)),
        "unseen_bigram": _share_missing(claim_pairs, pairs),
        "best_cover": best[1],
        "top2_cover": best[2],
        "best_bigram_cover": 1.0 - _share_missing(claim_pairs, best_unit.bigrams if best_unit else set()),
        **_together(bag, sources.windows(scope)),
        "longest_run": _longest_run(bag.stems, [sources.units[i].bag.stems for i in ranked[:CANDIDATES]]),
        "negation_mismatch": float(best_unit is not None and bag.negated != best_unit.bag.negated),
        "has_context": float(sources.has_context),
        "no_content": float(not content),
        "unseen_entity_in_passages": _share_missing(bag.entities, in_passages),
        "context_only_entity": min(3, len((bag.entities & in_context) - in_passages)) / 3.0,
        "new_passage_entity": min(3, len((bag.entities & in_passages) - in_context)) / 3.0,
        "passage_entities_used": len(bag.entities & passage_entities) / max(1, len(passage_entities)),
    }
    return Plan(claim, bag, scope, ranked[:EMBEDDED], lexical)


def _share_missing(items: Collection[object], vocabulary: Collection[object]) -> float:
    if not items:
        return 0.0
    return sum(1 for x in items if x not in vocabulary) / len(items)


def _best_cover(content: set[str], unit_sets: list[set[str]]) -> tuple[int, float, float]:
    """(position of the unit covering most of ``content``, its cover, cover of the best pair)."""
    if not content or not unit_sets:
        return (-1, 1.0 if not content else 0.0, 1.0 if not content else 0.0)
    overlaps = [content & s for s in unit_sets]
    best = max(range(len(overlaps)), key=lambda i: len(overlaps[i]))
    rest = content - overlaps[best]
    second = max((len(rest & s) for s in unit_sets), default=0)
    n = len(content)
    return best, len(overlaps[best]) / n, (len(overlaps[best]) + second) / n


def _rarity(bag: Bag, vocabulary: set[str], rank: Mapping[str, int]) -> dict[str, float]:
    """Absent rare words (names, specific terms) weigh more than absent common ones (paraphrase)."""
    rare_missing = common = common_missing = 0
    for word, s in zip(bag.words, bag.content, strict=True):
        missing = s not in vocabulary
        if word[0].isdigit() or rank.get(word, RARE_RANK) >= RARE_RANK:
            rare_missing += missing
        else:
            common += 1
            common_missing += missing
    return {
        "unseen_rare_count": min(3, rare_missing) / 3.0,
        "unseen_common": common_missing / common if common else 0.0,
    }


def _together(bag: Bag, windows: dict[str, set[int]]) -> dict[str, float]:
    """Do the claim's words that the sources contain occur near each other there?

    A claim can use only words of the source and still pair them wrongly ("X starred in Y" when
    the source says X starred in Z): such pairs never share a window of the source.
    """
    seen = [w for w in dict.fromkeys(bag.content) if w in windows][:MAX_PAIR_WORDS]
    together = total = named_together = named_total = 0
    for a, b in combinations(seen, 2):
        joint = not windows[a].isdisjoint(windows[b])
        total += 1
        together += joint
        if a in bag.entities or b in bag.entities:
            named_total += 1
            named_together += joint
    return {
        "pairs_together": together / total if total else 1.0,
        "entity_pairs_together": named_together / named_total if named_total else 1.0,
    }


def _longest_run(claim: list[str], units: list[list[str]]) -> float:
    """Longest run of consecutive claim words found in a unit, as a share of the claim (cap 1)."""
    if not claim:
        return 0.0
    longest = 0
    for unit in units:
        positions: dict[str, list[int]] = {}
        for j, w in enumerate(unit):
            positions.setdefault(w, []).append(j)
        for i, w in enumerate(claim):
            for j in positions.get(w, ()):
                n = 1
                while i + n < len(claim) and j + n < len(unit) and claim[i + n] == unit[j + n]:
                    n += 1
                longest = max(longest, n)
    return min(1.0, longest / len(claim))


def embedding_features(claim_vec: np.ndarray, unit_vecs: np.ndarray) -> dict[str, float]:
    """Cosines of the claim to its candidate units (vectors are unit norm)."""
    if len(unit_vecs) == 0:
        return {"cos_max": 0.0, "cos_top3": 0.0}
    cos = np.sort(unit_vecs @ claim_vec)[::-1]
    return {"cos_max": float(cos[0]), "cos_top3": float(cos[:3].mean())}


def feature_row(lexical: dict[str, float], embedded: dict[str, float]) -> np.ndarray:
    """The features in :data:`FEATURES` order."""
    values = lexical | embedded
    return np.array([values[name] for name in FEATURES], dtype=np.float32)


@dataclass
class Item:
    """Claim sentences to score against one :class:`Sources` within one scope."""

    sentences: list[str]
    sources: Sources
    scope: frozenset[int] | None = None


def featurize(
    items: Sequence[Item], embed: Callable[[list[str]], np.ndarray]
) -> tuple[list[np.ndarray], list[list[Plan]], list[list[dict[int, float]]]]:
    """Feature rows (one matrix per item), the plans, and each sentence's cosine per candidate unit.

    ``embed`` is called once, with the distinct claim and candidate texts of all items.
    """
    plans = [[plan(s, item.sources, item.scope) for s in item.sentences] for item in items]
    index: dict[str, int] = {}
    for item, item_plans in zip(items, plans, strict=True):
        for p in item_plans:
            index.setdefault(strip_citations(p.claim), len(index))
            for u in p.candidates:
                index.setdefault(item.sources.units[u].text, len(index))
    vectors = embed(list(index)) if index else np.zeros((0, 1), dtype=np.float32)
    matrices: list[np.ndarray] = []
    cosines: list[list[dict[int, float]]] = []
    for item, item_plans in zip(items, plans, strict=True):
        rows = []
        cosines.append([])
        for p in item_plans:
            claim_vec = vectors[index[strip_citations(p.claim)]]
            unit_vecs = vectors[[index[item.sources.units[u].text] for u in p.candidates]]
            rows.append(feature_row(p.lexical, embedding_features(claim_vec, unit_vecs)))
            cosines[-1].append(dict(zip(p.candidates, (unit_vecs @ claim_vec).tolist(), strict=True)))
        matrices.append(np.stack(rows) if rows else np.zeros((0, len(FEATURES)), dtype=np.float32))
    return matrices, plans, cosines
