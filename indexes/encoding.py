"""Turning the bytes of a text file into ``str`` without ever raising, and telling text from junk.

Order of trust: a byte-order mark, then UTF-16 without one (told by its NUL bytes), then
strict UTF-8, then charset-normalizer's best guess (biased towards cp1252, the most common
legacy encoding, when it fits as well), and finally cp1252 with replacement characters.

:func:`binary_reason` says when decoded "text" is really binary data (random bytes, an
archive or an executable renamed ``.txt``): too few printable characters, or a last-resort
decoding that is not clean.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass
from typing import Literal

MIN_PRINTABLE_SHARE = 0.95
"""Share of printable characters needed by text decoded with confidence (BOM, UTF-8, detected)."""
MIN_PRINTABLE_SHARE_GUESSED = 0.99
"""Text that no detector recognised (the cp1252 last resort) needs this share."""
_SAMPLE_CHARS = 100_000
"""Characters looked at from each of the start, middle and end of a long text."""
_WHITESPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c")
_JUNK_CATEGORIES = frozenset({"Cc", "Cn", "Cs", "Co"})

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def bom_encoding(data: bytes) -> str | None:
    """The encoding a byte-order mark at the start of ``data`` announces, if any."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


@dataclass(frozen=True)
class Decoded:
    """Text decoded from bytes, the encoding used, and how it was chosen."""

    text: str
    encoding: str
    how: Literal["bom", "nul-pattern", "utf-8", "detected", "fallback"]
    """``fallback``: nothing recognised the bytes; cp1252 with replacement characters."""


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode ``data`` as text; returns ``(text, encoding_name)``. Never raises."""
    decoded = decode(data)
    return decoded.text, decoded.encoding


def decode(data: bytes) -> Decoded:
    """Decode ``data`` as text, saying how the encoding was chosen. Never raises."""
    bom = bom_encoding(data)
    if bom is not None:
        payload = data if bom == "utf-8-sig" else data[len(_bom_bytes(bom)) :]
        return Decoded(payload.decode(bom, errors="replace"), bom, "bom")
    utf16 = _utf16_by_nuls(data)
    if utf16 is not None:
        return Decoded(data.decode(utf16, errors="replace"), utf16, "nul-pattern")
    try:
        return Decoded(data.decode("utf-8"), "utf-8", "utf-8")
    except UnicodeDecodeError:
        pass
    guess = _guess(data)
    if guess is not None:
        try:
            return Decoded(data.decode(guess), guess, "detected")
        except (UnicodeDecodeError, LookupError):
            pass
    return Decoded(data.decode("cp1252", errors="replace"), "cp1252", "fallback")


def printable_share(text: str) -> float:
    """Share of characters that belong in text: not control (bar whitespace), unassigned,
    surrogate, private-use or U+FFFD. Long texts are sampled at the start, middle and end."""
    if len(text) > 3 * _SAMPLE_CHARS:
        middle = len(text) // 2 - _SAMPLE_CHARS // 2
        text = text[:_SAMPLE_CHARS] + text[middle : middle + _SAMPLE_CHARS] + text[-_SAMPLE_CHARS:]
    if not text:
        return 1.0
    junk = sum(1 for char in text if _is_junk(char))
    return 1.0 - junk / len(text)


def binary_reason(decoded: Decoded) -> str | None:
    """Why ``decoded`` is binary data rather than text, or ``None`` when it reads as text.

    Text with nothing but whitespace and control characters is left to the loader ("no text found").
    """
    text = decoded.text
    share = printable_share(text)
    if share == 1.0 or not any(not _is_junk(c) and not c.isspace() for c in text[:_SAMPLE_CHARS]):
        return None
    needed = MIN_PRINTABLE_SHARE_GUESSED if decoded.how == "fallback" else MIN_PRINTABLE_SHARE
    if share >= needed:
        return None
    how = "no text encoding fits the bytes; " if decoded.how == "fallback" else ""
    return (
        f"looks like binary data, not text ({how}only {share:.1%} printable characters "
        f"decoded as {decoded.encoding}, {needed:.0%} needed)"
    )


def _is_junk(char: str) -> bool:
    if char == "\ufffd":
        return True
    if char.isprintable() or char in _WHITESPACE_CONTROLS:
        return False
    return unicodedata.category(char) in _JUNK_CATEGORIES


def _utf16_by_nuls(data: bytes) -> str | None:
    """UTF-16 without a BOM: mostly-Latin text has a NUL in every other byte, and only there."""
    sample = data[:4096]
    if len(sample) < 8 or len(sample) % 2 or b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    half = len(sample) // 2
    even_nuls, odd_nuls = even.count(0), odd.count(0)
    if odd_nuls >= 0.4 * half and even_nuls <= 0.02 * half:
        name = "utf-16-le"
    elif even_nuls >= 0.4 * half and odd_nuls <= 0.02 * half:
        name = "utf-16-be"
    else:
        return None
    try:
        data.decode(name)
    except UnicodeDecodeError:
        return None
    return name


def _bom_bytes(name: str) -> bytes:
    return next(bom for bom, n in _BOMS if n == name)


def _guess(data: bytes) -> str | None:
    """charset-normalizer's best guess, preferring cp1252 when it reads the bytes as well."""
    try:
        from charset_normalizer import from_bytes

        matches = from_bytes(data)
    except Exception:  # a detector bug must not stop the load; the caller falls back to cp1252
        return None
    best = matches.best()
    if best is None:
        return None
    if "cp1252" in best.could_be_from_charset:
        return "cp1252"
    for match in matches:
        if (
            match.encoding == "cp1252"
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.05
        ):
            return "cp1252"
    return str(best.encoding)
