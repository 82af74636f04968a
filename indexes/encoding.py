"""Turning the bytes of a text file into ``str`` without ever raising.

Order of trust: a byte-order mark, then strict UTF-8, then charset-normalizer's best
guess (biased towards cp1252, the most common legacy encoding, when it fits as well),
and finally cp1252 with replacement characters.
"""

from __future__ import annotations

import codecs

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


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode ``data`` as text; returns ``(text, encoding_name)``. Never raises."""
    bom = bom_encoding(data)
    if bom is not None:
        payload = data if bom == "utf-8-sig" else data[len(_bom_bytes(bom)) :]
        return payload.decode(bom, errors="replace"), bom
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guess = _guess(data)
    if guess is not None:
        try:
            return data.decode(guess), guess
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("cp1252", errors="replace"), "cp1252"


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
