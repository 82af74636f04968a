"""E-mail (``.eml``) with the standard ``email`` package: headers, then the body text.

A ``text/plain`` body is preferred; an HTML-only body goes through the HTML loader.
Attachments are not read, only listed by name in the metadata.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from indexes.encoding import decode_bytes
from indexes.loaders.common import SectionBuilder, inline, read_bytes
from rag_app.documents import LoadedDocument

_HEADERS = (("subject", "Subject"), ("from", "From"), ("to", "To"), ("cc", "Cc"), ("date", "Date"))


def load_eml(path: Path) -> LoadedDocument:
    """An RFC 822 message: a header section (subject, from, to, date) and the body's paragraphs."""
    message = email.message_from_bytes(read_bytes(path), policy=policy.default)
    metadata: dict[str, Any] = {}
    header_lines = []
    for key, name in _HEADERS:
        value = _header(message, name)
        if value:
            metadata[key] = value
            header_lines.append(f"{name}: {value}")
    if "subject" in metadata:
        metadata["title"] = metadata["subject"]
    builder = SectionBuilder()
    builder.text("\n".join(header_lines), lines=True)
    body = _body(message)
    if body is not None:
        subtype, text = body
        if subtype == "html":
            from indexes.loaders.html import html_sections, parse_html

            html_sections(parse_html(text, path), builder)
        else:
            for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
                builder.text(block, lines=True)
    attachments = [part.get_filename() for part in _attachments(message)]
    if attachments:
        metadata["attachments"] = [name for name in attachments if name]
    return LoadedDocument(str(path), "eml", builder.sections, metadata)


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):  # malformed header the policy cannot parse
        raw = message.get_all(name, failobj=[None])
        value = raw[0] if raw else None
    return inline(str(value)) if value is not None else ""


def _body(message: Message) -> tuple[str, str] | None:
    """``(subtype, text)`` of the preferred body part, plain text over HTML."""
    part: Message | None = message
    if isinstance(message, EmailMessage):
        part = message.get_body(preferencelist=("plain", "html"))
    if part is None or part.get_content_maintype() != "text":
        return None
    return part.get_content_subtype(), _part_text(part)


def _part_text(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError):  # an unknown or lying charset
        pass
    payload = part.get_payload(decode=True)
    return decode_bytes(payload)[0] if isinstance(payload, bytes) else str(payload or "")


def _attachments(message: Message) -> list[Message]:
    if isinstance(message, EmailMessage):
        return list(message.iter_attachments())
    return []
