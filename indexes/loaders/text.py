"""Plain text, Markdown and reStructuredText: small line-based parsers that keep the structure."""

from __future__ import annotations

import re
from pathlib import Path

from indexes.loaders.common import SectionBuilder, read_text
from rag_app.documents import LoadedDocument

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*([-*+]|\d+[.)])[ \t]")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")
_RST_CODE_DIRECTIVE = re.compile(r"^\.\.[ \t]+(code|code-block|sourcecode|literalinclude)::")
_RST_DIRECTIVE = re.compile(r"^\.\.[ \t]+\S.*$")


def load_text(path: Path) -> LoadedDocument:
    """A ``.txt`` file: paragraphs split on blank lines, line breaks kept."""
    text, encoding = read_text(path)
    builder = SectionBuilder()
    for block in re.split(r"\n[ \t]*\n", _newlines(text)):
        builder.text(block, lines=True)
    return LoadedDocument(str(path), "text", builder.sections, {"encoding": encoding})


def load_markdown(path: Path) -> LoadedDocument:
    """A Markdown file: ATX and setext headings, fenced and indented code, pipe tables, paragraphs."""
    text, encoding = read_text(path)
    lines = _newlines(text).split("\n")
    metadata: dict[str, object] = {"encoding": encoding}
    lines = _front_matter(lines, metadata)
    builder = SectionBuilder()
    para: list[str] = []

    def flush() -> None:
        _markdown_paragraph(builder, para)
        para.clear()

    i = 0
    after_list = False
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            body: list[str] = []
            i += 1
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            while i < len(lines) and not closing.match(lines[i]):
                body.append(lines[i])
                i += 1
            builder.code("\n".join(body))
            i += 1
            after_list = False
            continue
        heading = _ATX.match(line)
        if heading:
            flush()
            after_list = False
            builder.heading(_plain(heading.group(2) or ""), len(heading.group(1)))
        elif para and _SETEXT.match(line) and not _LIST_ITEM.match(para[-1]):
            title = " ".join(para)
            para.clear()
            builder.heading(_plain(title), 1 if line.strip()[0] == "=" else 2)
        elif not line.strip():
            if para:
                after_list = any(_LIST_ITEM.match(p) for p in para)
            flush()
        elif not para and not after_list and (line.startswith("    ") or line.startswith("\t")):
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i][:1] == "\t" or lines[i][:4] == "    "):
                body.append(lines[i][1:] if lines[i][:1] == "\t" else lines[i][4:])
                i += 1
            builder.code("\n".join(body))
            continue
        elif _BREAK.match(line) and not para:
            pass  # a thematic break carries no text
        else:
            para.append(line)
        i += 1
    flush()
    first_heading = next((s.text for s in builder.sections if s.kind == "heading"), None)
    if first_heading and "title" not in metadata:
        metadata["title"] = first_heading
    return LoadedDocument(str(path), "markdown", builder.sections, metadata)


def load_rst(path: Path) -> LoadedDocument:
    """A reStructuredText file: adorned headings, ``::`` literal blocks and code directives as code."""
    text, encoding = read_text(path)
    lines = _newlines(text).split("\n")
    builder = SectionBuilder()
    styles: list[tuple[str, bool]] = []  # heading adornments in order of first use = levels
    para: list[str] = []
    literal_next = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if literal_next and line[:1] in (" ", "\t"):
            body, i = _indented_block(lines, i)
            builder.code(body)
            literal_next = False
            continue
        overline = bool(_RST_ADORNMENT.match(line)) and i + 2 < len(lines) and lines[i + 2] == line
        if overline and nxt.strip():
            builder.text("\n".join(para), lines=True)
            para = []
            builder.heading(nxt, _rst_level(styles, line[0], True))
            i += 3
            continue
        underlined = _RST_ADORNMENT.match(nxt) and len(nxt.rstrip()) >= len(line.rstrip())
        if line.strip() and not para and underlined:
            builder.heading(line, _rst_level(styles, nxt[0], False))
            i += 2
            continue
        if _RST_CODE_DIRECTIVE.match(line):
            builder.text("\n".join(para), lines=True)
            para = []
            literal_next = True
            i += 1
            while i < len(lines) and lines[i].strip().startswith(":"):
                i += 1  # directive options such as :linenos:
            continue
        if not line.strip():
            if para:
                joined = "\n".join(para)
                joined = joined.rstrip()
                literal_next = joined.endswith("::")
                if literal_next:  # "Text::" reads "Text:"; a "::" alone or after a space disappears
                    alone = joined == "::" or joined[:-2].endswith((" ", "\n"))
                    joined = joined[:-2].rstrip() if alone else joined[:-1]
                builder.text(joined, lines=True)
                para = []
        elif (_RST_DIRECTIVE.match(line) or _RST_ADORNMENT.match(line)) and not para:
            pass  # directive markup (".. note::", comments); its indented content reads as text
        else:
            literal_next = False
            para.append(line)
        i += 1
    builder.text("\n".join(para), lines=True)
    metadata: dict[str, object] = {"encoding": encoding}
    first_heading = next((s.text for s in builder.sections if s.kind == "heading"), None)
    if first_heading:
        metadata["title"] = first_heading
    return LoadedDocument(str(path), "rst", builder.sections, metadata)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _plain(text: str) -> str:
    """Markdown inline markup reduced to its words: images to their alt text, links to their text."""
    return _LINK.sub(r"\1", _IMAGE.sub(r"\1", text))


def _markdown_paragraph(builder: SectionBuilder, para: list[str]) -> None:
    if not para:
        return
    if len(para) >= 2 and "|" in para[0] and _TABLE_RULE.match(para[1]):
        rows = [_pipe_cells(line) for line in (para[0], *para[2:])]
        builder.table(rows)
        return
    builder.text(_plain("\n".join(para)), lines=True)


def _pipe_cells(line: str) -> list[str]:
    line = line.strip()
    line = line.removeprefix("|").removesuffix("|")
    return [_plain(cell.strip()) for cell in line.split("|")]


def _front_matter(lines: list[str], metadata: dict[str, object]) -> list[str]:
    """Drop a leading YAML front-matter block, keeping its ``title:`` as metadata."""
    if not lines or lines[0].strip() != "---":
        return lines
    for end in range(1, min(len(lines), 100)):
        if lines[end].strip() in ("---", "..."):
            for line in lines[1:end]:
                key, _, value = line.partition(":")
                if key.strip() == "title" and value.strip():
                    metadata["title"] = value.strip().strip("\"'")
            return lines[end + 1 :]
    return lines


def _indented_block(lines: list[str], i: int) -> tuple[str, int]:
    """The indented block starting at ``lines[i]``, dedented, and the index after it."""
    body: list[str] = []
    while i < len(lines) and (not lines[i].strip() or lines[i][:1] in (" ", "\t")):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
        i -= 1
    indent = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
    return "\n".join(b[indent:] for b in body), i


def _rst_level(styles: list[tuple[str, bool]], char: str, overline: bool) -> int:
    style = (char, overline)
    if style not in styles:
        styles.append(style)
    return styles.index(style) + 1
