"""When to stop decoding and where to cut the text: stop strings and loops.

Small models loop ("The answer is: The answer is: …"). Token-level penalties (repetition
penalty, no-repeat n-grams) make exact loops rare, but the model then repeats itself with
different punctuation or casing. :class:`LoopDetector` looks at *words* (lower-cased, without
punctuation), so it catches those too.

Everything here works on the decoded text, never on token ids, so every backend applies the
same rules and ``generate`` and ``stream`` cut at the same place:

* :meth:`TextControl.should_stop` is asked after each decoded token (stop decoding?);
* :meth:`TextControl.finish` cuts the final text and says why;
* :meth:`TextControl.safe_length` says how much of a partial text can be streamed already,
  holding back whatever a later cut could still remove (the start of a stop string, a run of
  words that may turn out to be a loop, a half-decoded word or character).

Pure Python: no torch, no tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"\w+")


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text``, or ``None``."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(found) if found else None


def until_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """Pass text pieces on, ending before the first stop string (which may span pieces)."""
    if not any(stop):
        yield from (p for p in pieces if p)
        return
    hold = max(len(s) for s in stop) - 1  # a stop string may start in the last `hold` characters
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = first_stop(buffer, stop)
        if cut is not None:
            if cut:
                yield buffer[:cut]
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer


def stop_prefix_length(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is the beginning of a stop string."""
    longest = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


@dataclass(frozen=True)
class Loop:
    """A loop at the end of a text: ``period`` words repeated; the text is cut at ``cut``."""

    period: int
    repeated_words: int
    cut: int
    """Character index where the repeated tail starts (the first copy is kept)."""


class LoopDetector:
    """Finds text that ends in a repeated run of words.

    A run of period ``p`` is the longest end of the word sequence in which every word equals
    the word ``p`` places before it; its length ``k`` counts the words after the first copy.
    A loop is a run with ``k >= max(p, min_words)``: at least two full copies, and at least
    ``min_words`` repeated words (so "very very" or "1 2 1 2" in a real answer do not stop it).
    Periods up to ``max_period`` words are checked: a repeated sentence or two.
    """

    def __init__(self, *, min_words: int = 8, max_period: int = 64) -> None:
        if min_words < 1 or max_period < 1:
            raise ValueError(f"min_words and max_period must be >= 1, got {min_words}, {max_period}")
        self.min_words = min_words
        self.max_period = max_period

    def find(self, text: str) -> Loop | None:
        """The loop at the end of ``text`` (cutting the most), or ``None``."""
        words = _words(text)
        best: Loop | None = None
        for period, run in _runs(words, self.max_period):
            if run >= max(period, self.min_words) and (best is None or run > best.repeated_words):
                best = Loop(period, run, words[len(words) - run][0])
        return best

    def safe_length(self, text: str) -> int:
        """Characters of ``text`` that no loop found later can cut: up to the start of the longest run."""
        core = text.rstrip("\ufffd")  # half of a multi-byte character may still become a letter
        words = _words(core)
        safe = len(core)
        if words and words[-1][1] == len(core):  # the last word may still grow: judge runs without it
            safe = words.pop()[0]
        for _, run in _runs(words, self.max_period):
            safe = min(safe, words[len(words) - run][0])
        return safe


class TextControl:
    """Stop strings and loop detection for one request."""

    def __init__(self, stop: Sequence[str] = (), detector: LoopDetector | None = None) -> None:
        self.stop = [s for s in stop if s]
        self.detector = detector

    def should_stop(self, text: str) -> bool:
        """Whether decoding can end: a stop string appeared or the text loops."""
        if first_stop(text, self.stop) is not None:
            return True
        return self.detector is not None and self.detector.find(text) is not None

    def finish(self, text: str) -> tuple[str, str | None]:
        """The text cut at the first stop string or before a loop's repeats, and why.

        The reason is ``"stop"``, ``"repetition"``, or ``None`` when nothing was cut.
        """
        stop_at = first_stop(text, self.stop)
        loop = self.detector.find(text) if self.detector is not None else None
        if loop is not None and (stop_at is None or loop.cut < stop_at):
            return text[: loop.cut].rstrip(), "repetition"
        if stop_at is not None:
            return text[:stop_at], "stop"
        return text, None

    def safe_length(self, text: str) -> int:
        """How many characters of a partial ``text`` can be streamed: no later cut reaches them."""
        safe = len(text)
        while safe and text[safe - 1] == "\ufffd":  # half of a multi-byte character
            safe -= 1
        stop_at = first_stop(text, self.stop)
        if stop_at is not None:
            safe = min(safe, stop_at)
        safe = min(safe, len(text) - stop_prefix_length(text, self.stop))
        if self.detector is not None:
            safe = min(safe, self.detector.safe_length(text))
        return len(text[:safe].rstrip())  # a loop cut strips the whitespace before it


def _words(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]


def _runs(words: list[tuple[int, int, str]], max_period: int) -> list[tuple[int, int]]:
    """``(period, run length)`` for each period with a run of at least one word at the end."""
    n = len(words)
    runs = []
    for period in range(1, min(max_period, n - 1) + 1):
        run = 0
        while run < n - period and words[n - 1 - run][2] == words[n - 1 - run - period][2]:
            run += 1
        if run:
            runs.append((period, run))
    return runs


def controlled_stream(pieces: Iterable[str], control: TextControl) -> Iterator[str]:
    """Re-chunk ``pieces`` so that they join to ``control.finish(whole text)``.

    Stops reading ``pieces`` once ``control.should_stop``; the caller closes the source.
    """
    text, sent = "", 0
    for piece in pieces:
        text += piece
        if control.should_stop(text):
            break
        safe = control.safe_length(text)
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    final, _ = control.finish(text)
    if len(final) > sent:
        yield final[sent:]
