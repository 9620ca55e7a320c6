"""The screen and driver of ``fewshot label``: :func:`label_file`, drawn with rich.

On a terminal the commands are single keys (Enter, ``s``, ``u``, ``q``, ``?``, and a digit
when there are at most 9 labels); any other key starts a line (a label name, or a number
with two digits) finished with Enter. When stdin is not a terminal, every answer is one
line, so a session can be scripted exactly as a person drives it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from fewshot.active import DEFAULT_ORDER
from fewshot.cli.render import cut, visible
from fewshot.tasks.label import LabelSession, Progress, Question, Reply, parse_answer

if TYPE_CHECKING:
    from fewshot.workspace import Workspace

_SHOWN_NEIGHBORS = 3
_MAX_TEXT = 1500
_KEYS = "[Enter] accept · [1-N] pick · [name] label · [s]kip · [u]ndo · [q]uit · [?] help"


def _threshold_note(count: int, threshold: int) -> str:
    left = threshold - count
    return "[green]✓[/]" if left <= 0 else f"[dim]{left} to SetFit[/]"


def labels_line(question: Question) -> Any:
    """Return the numbered label list with counts and the distance to the SetFit threshold."""
    from rich.columns import Columns
    from rich.markup import escape

    counts = question.progress.counts
    threshold = question.progress.threshold
    items = [
        f"[bold]{number}[/] {escape(visible(label))} {counts.get(label, 0)} "
        f"{_threshold_note(counts.get(label, 0), threshold)}"
        for number, label in enumerate(question.labels, start=1)
    ]
    return Columns(items, padding=(0, 3)) if items else "[dim]no labels yet: type a name[/]"


def question_view(question: Question) -> Any:
    """Return the rich renderable of one question."""
    from rich.console import Group
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    progress = question.progress
    model = "retrieval" if progress.model is None else f"SetFit model {progress.model}"
    model += " · training…" if progress.training else ""
    title = (
        f"{progress.labeled} labeled this session · {progress.remaining} left · "
        f"{progress.skipped} skipped · {model}"
    )
    text = cut(question.text, _MAX_TEXT, flat=False)
    parts: list[Any] = [Panel(Text(text), title=title, title_align="left")]
    suggestion = question.suggestion
    if suggestion is None:
        parts.append(Text("No suggestion yet (no labeled examples)."))
    else:
        parts.append(
            f"Suggestion: [bold cyan]{escape(visible(suggestion.label))}[/] "
            f"{suggestion.confidence:.2f} ({suggestion.stage})"
        )
        for near in (suggestion.neighbors or ())[:_SHOWN_NEIGHBORS]:
            flat = cut(near.text, 90)
            tag = escape(f"[{visible(near.label)}]")
            parts.append(f"  [dim]{near.similarity:.2f}[/] {tag} {escape(flat)}")
    parts.append(labels_line(question))
    parts.append(f"[dim]{escape(_KEYS)}[/]")
    return Group(*parts)


class TerminalScreen:
    """Draws questions with rich and reads answers: single keys on a terminal, else lines.

    Args:
        stdin: Where answers come from (default ``sys.stdin``).
        console: A rich Console (default: one on stdout).
        single_keys: Read single keys (default: when ``stdin`` is a terminal).
    """

    def __init__(
        self, stdin: IO[str] | None = None, console: Any = None, single_keys: bool | None = None
    ) -> None:
        from rich.console import Console

        self.stdin = stdin if stdin is not None else sys.stdin
        self.console = console if console is not None else Console(highlight=False)
        self.single_keys = self.stdin.isatty() if single_keys is None else single_keys

    def ask(self, question: Question) -> str | None:
        """Show ``question``; return the answer, or None at the end of the input."""
        self.console.print(question_view(question))
        return self._read(len(question.labels))

    def _read(self, n_labels: int) -> str | None:
        self.console.print("> ", end="")
        if self.single_keys:
            return self._key(n_labels)
        try:
            line = self.stdin.readline()
        except KeyboardInterrupt:
            return "q"
        if not line:
            self.console.print()
            return None
        answer = line.rstrip("\r\n")
        self.console.print(answer, markup=False)
        return answer

    def _key(self, n_labels: int) -> str | None:
        import click

        try:
            key = click.getchar()
        except (KeyboardInterrupt, EOFError):
            return "q"
        if key in ("\r", "\n"):
            self.console.print()
            return ""
        if key == "\x04":  # Ctrl-D
            return None
        if key.lower() in "suq?" or (key.isdigit() and key != "0" and n_labels <= 9):
            self.console.print(key, markup=False)
            return key
        # Any other key starts a typed answer (a label name, or a longer number).
        self.console.print(key, end="", markup=False)
        try:
            return key + input()
        except (KeyboardInterrupt, EOFError):
            return "q"

    def ask_done(self) -> str | None:
        """Say that every text is decided; return the answer (``u`` undoes) or None."""
        self.console.print(
            "Every text of the file is decided: [bold]u[/] undoes the last decision, "
            "any other answer ends the session."
        )
        return self._read(0)

    def tell(self, reply: Reply) -> None:
        """Show the outcome of an answer."""
        from rich.markup import escape

        style = {"invalid": "red", "undone": "yellow", "labeled": "green"}.get(reply.kind, "")
        message = escape(visible(reply.message, lines=True))
        self.console.print(f"[{style}]{message}[/]" if style else message)
        if reply.notice:
            self.console.print(f"[bold magenta]{escape(visible(reply.notice))}[/]")

    def finish(self, progress: Progress) -> None:
        """Show the summary at the end of the session."""
        from rich.markup import escape

        counts = ", ".join(f"{escape(visible(label))} {n}" for label, n in progress.counts.items())
        self.console.print(
            f"Labeled {progress.labeled} this session; {progress.skipped} skipped, "
            f"{progress.remaining} left. Labels: {counts or 'none'}."
        )
        if progress.remaining == 0 and progress.skipped:
            self.console.print(
                "Every text is decided; --retry-skipped asks the skipped ones again."
            )


class Screen(Protocol):
    """What the loop needs from a user interface (:class:`TerminalScreen` is one)."""

    def ask(self, question: Question) -> str | None:
        """Show the question; return the answer, or None at the end of the input."""

    def tell(self, reply: Reply) -> None:
        """Show the outcome of an answer."""

    def ask_done(self) -> str | None:
        """Say that every text is decided; return the answer (``u`` undoes) or None."""

    def finish(self, progress: Progress) -> None:
        """Show the summary at the end."""


def run(session: LabelSession, screen: Screen) -> Progress:
    """Ask until the user quits or the input ends; return the progress.

    When every text is decided, one more answer is read: ``u`` undoes the last decision (its
    text is asked again), anything else ends the session.
    """
    while True:
        question = session.current()
        raw = screen.ask(question) if question is not None else screen.ask_done()
        if raw is None or (question is None and parse_answer(raw).kind != "undo"):
            break
        reply = session.answer(raw)
        screen.tell(reply)
        if reply.kind == "quit":
            break
    progress = session.progress()
    screen.finish(progress)
    return progress


def label_file(
    workspace: Workspace,
    texts: list[str],
    name: str,
    screen: Screen,
    order: str = DEFAULT_ORDER,
    random_state: int = 0,
    retry_skipped: bool = False,
    progress: bool = False,
) -> Progress:
    """Label ``texts`` (read from the file ``name``) interactively through ``screen``.

    Args:
        workspace: Receives the labels.
        texts: The file's texts.
        name: The file's name (labels are recorded with the source ``label:<name>``).
        screen: The user interface.
        order: Query strategy (``uncertain``, ``diverse``, ``random`` or ``file``).
        random_state: Seed of the ``random`` order.
        retry_skipped: Ask again for texts skipped in earlier sessions.
        progress: Show a progress bar while embedding the texts.
    """
    session = workspace.label_session(
        texts, f"label:{Path(name).name}", order, random_state, retry_skipped, progress
    )
    return run(session, screen)


__all__ = ["Screen", "TerminalScreen", "label_file", "labels_line", "question_view", "run"]
