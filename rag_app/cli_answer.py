"""``rag-app ask`` and ``chat``: answers from the documents, printed with their grounding and sources."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import click

from rag_app.cli_common import open_rag, print_json
from rag_app.errors import RagAppError

if TYPE_CHECKING:
    from rag_app.answer import Answer, Citation

__all__ = ["ask", "chat"]


def _print_answer(answer: Answer, *, streamed: bool = False, show_rejected: bool = False) -> None:
    """The answer (unless already streamed), why it was withheld, and its sources.

    A withheld draft is not printed (it was not supported by the documents) unless
    ``show_rejected``; the closest passages are shown whole enough to read an answer in them.
    """
    if not streamed:
        click.echo(answer.text)
    if answer.abstained:
        click.secho(answer.abstain_reason, fg="yellow", err=True)
        if show_rejected and answer.draft:
            click.secho("Withheld draft (not supported by the documents):", fg="red", err=True)
            click.secho(f"  {answer.draft}", fg="red", err=True)
        _print_passages("Closest passages:", answer.citations[:3], width=900)
        return
    grounding = answer.grounding
    if grounding is not None:
        if not answer.supported:
            click.secho("Not supported by the documents: check it against the sources.", fg="red")
        color = "green" if answer.supported else "red"
        click.secho(f"grounding {grounding.score:.2f}", fg=color)
        for sentence in grounding.flagged:
            click.secho(
                f"  ! {sentence.text.strip()} (not found in the sources, {sentence.score:.2f})", fg="red"
            )
    cited = [c for c in answer.citations if c.cited]
    spans = {s.source: s for s in (grounding.sentences if grounding else []) if s.source}
    click.echo("Sources:" if cited else "Closest passages:")
    for c in cited or answer.citations[:3]:
        where = c.source + (f", page {c.page}" if c.page else "")
        span = spans.get(c.number)
        if span is not None:
            click.echo(f"  [{c.number}] {where}, chars {span.source_start}-{span.source_end}")
            click.echo(f"      {_in_context(c, span.source_start, span.source_end)}")
        else:
            text = " ".join(c.text.split())
            click.echo(f"  [{c.number}] {where}, chars {c.start}-{c.end}")
            click.echo(f"      {text[:300]}{' ...' if len(text) > 300 else ''}")


def _in_context(citation: Citation, start: int, end: int, margin: int = 160) -> str:
    """The supporting span in its passage, with some text around it and the span in bold."""
    local_start, local_end = start - citation.start, end - citation.start
    text = citation.text
    before = " ".join(text[max(0, local_start - margin) : local_start].split(" "))
    after = text[local_end : local_end + margin]
    left = "... " if local_start > margin else ""
    right = " ..." if local_end + margin < len(text) else ""
    span = click.style(text[local_start:local_end], bold=True)
    return " ".join(f"{left}{before}{span}{after}{right}".split())


def _print_passages(title: str, citations: Sequence[Citation], *, width: int) -> None:
    if not citations:
        return
    click.echo(title)
    for c in citations:
        where = c.source + (f", page {c.page}" if c.page else "") + f", chars {c.start}-{c.end}"
        text = " ".join(c.text.split())
        click.echo(f"  [{c.number}] {where}\n      {text[:width]}{' ...' if len(text) > width else ''}")


class _Progress:
    """``searching ...``, ``writing ...``, ``checking ...`` on a terminal's stderr, each replacing the last.

    Off when stderr is not a terminal, so scripts and logs get only the answer and real errors.
    """

    LABELS: ClassVar[dict[str, str]] = {
        "searching": "searching the documents",
        "writing": "writing the answer",
        "checking": "checking it against the sources",
    }

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def __call__(self, step: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[K{self.LABELS.get(step, step)} ...", nl=False, err=True)
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
        self.shown = False


@click.command()
@click.argument("question")
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("-k", "k", type=click.IntRange(1, 100), default=None, help="Passages retrieved.")
@click.option("--source", default=None, help="Only files whose path matches this glob.")
@click.option("--format", "formats", multiple=True, help="Only these formats; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the Answer object as JSON (draft included).")
@click.option("--stream/--no-stream", default=None, help="Print text as it is checked (default: on a tty).")
@click.option("--show-rejected", is_flag=True, help="Also print a withheld draft, marked as unsupported.")
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    index: Path,
    k: int | None,
    source: str | None,
    formats: tuple[str, ...],
    as_json: bool,
    stream: bool | None,
    show_rejected: bool,
) -> None:
    """Answer QUESTION from the documents, citing numbered sources, or say they do not contain it.

    \b
    Examples:
      rag-app ask "what does the warranty cover?" --index my-index
      rag-app ask "when was it founded?" --index my-index --json
      rag-app ask "who signed it?" --index my-index --show-rejected
    """
    rag = open_rag(ctx, index)
    if as_json:
        print_json(rag.ask(question, k, source=source, formats=formats).to_dict())
        return
    progress = _Progress(enabled=sys.stderr.isatty())
    if stream is None:
        stream = sys.stdout.isatty()
    if not stream:
        answer = rag.ask(question, k, source=source, formats=formats, on_step=progress)
        progress.clear()
        _print_answer(answer, show_rejected=show_rejected)
        return
    progress("searching")
    answer_stream = rag.stream(question, k, source=source, formats=formats)
    progress("writing")
    for piece in answer_stream:
        progress.clear()
        click.echo(piece, nl=False)
    progress.clear()
    click.echo()
    if answer_stream.answer is not None:  # always set once the stream is consumed
        _print_answer(answer_stream.answer, streamed=True, show_rejected=show_rejected)


@click.command()
@click.option("--index", "index", required=True, type=click.Path(path_type=Path), help="Index folder.")
@click.option("--conversation", default=None, help="Continue a stored conversation by id.")
@click.pass_context
def chat(ctx: click.Context, index: Path, conversation: str | None) -> None:
    """Chat with your documents in the terminal; follow-up questions use the conversation.

    Type /new for a new conversation, /exit (or Ctrl-D) to leave.

    \b
    Example:
      rag-app chat --index my-index
    """
    rag = open_rag(ctx, index)
    session = rag.chat(conversation)
    click.echo(f"conversation {session.id} over {index} (/new, /exit)")
    while True:
        try:
            question = input("you> ")
        except EOFError:
            click.echo()
            return
        if question.strip() in ("/exit", "/quit"):
            return
        if question.strip() == "/new":
            session = rag.chat()
            click.echo(f"conversation {session.id}")
            continue
        if not question.strip():
            continue
        try:
            click.echo("rag> ", nl=False)
            for piece in session.stream(question):
                click.echo(piece, nl=False)
            click.echo()
            _print_answer(session.last_answer, streamed=True)
        except RagAppError as exc:  # one bad question must not end the chat
            click.echo(f"\nerror: {exc}", err=True)
