"""The screen and driver of ``fewshot label``: :func:`label_file`, drawn with rich.

Every answer is one line finished with Enter, on a terminal as in a pipe, so a typed name is
never taken for a command (``shipping`` does not skip) and a session can be scripted exactly
as a person drives it. On a terminal the line is read with the line editor of Python's
``readline`` module where it exists (GNU readline or libedit): the arrow keys move in the
line and recall earlier answers, Tab completes a label name, and a paste is typed as it is
(its newline answers). Whatever escape sequences reach an answer are dropped
(:func:`fewshot.tasks.label.without_keys`), so no key ever becomes part of a label.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from fewshot.active import DEFAULT_ORDER
from fewshot.cli.render import cut, visible
from fewshot.tasks.label import (
    LabelSession,
    Progress,
    Question,
    Reply,
    parse_answer,
    without_keys,
)

if TYPE_CHECKING:
    from fewshot.workspace import Workspace

_SHOWN_NEIGHBORS = 3
_MAX_TEXT = 1500
_KEYS = (
    "then Enter: nothing accept · a number pick · a name label (Tab completes) · "
    "s skip · u undo · q quit · ? help"
)


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
        for number, label in question.listed()
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
            f"Suggestion: [bold cyan]{escape(visible(suggestion.best))}[/] "
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
    """Draws questions with rich and reads one answer a line, with a line editor on a terminal.

    Args:
        stdin: Where answers come from (default ``sys.stdin``).
        console: A rich Console (default: one on stdout).
        line_editor: Read with ``input()`` and readline (default: when ``stdin`` is the
            process's standard input and a terminal).
    """

    def __init__(
        self, stdin: IO[str] | None = None, console: Any = None, line_editor: bool | None = None
    ) -> None:
        from rich.console import Console

        self.stdin = stdin if stdin is not None else sys.stdin
        self.console = console if console is not None else Console(highlight=False)
        if line_editor is None:
            line_editor = self.stdin is sys.stdin and self.stdin.isatty()
        self.line_editor = line_editor

    def ask(self, question: Question) -> str | None:
        """Show ``question``; return the answer, or None at the end of the input."""
        self.console.print(question_view(question))
        return self._read(tuple(label for _, label in question.listed()))

    def _read(self, names: tuple[str, ...]) -> str | None:
        if self.line_editor:
            return _edited_line(names)
        self.console.print("> ", end="")
        try:
            line = self.stdin.readline()
        except KeyboardInterrupt:
            return "q"
        if not line:
            self.console.print()
            return None
        answer = without_keys(line.rstrip("\r\n"))
        self.console.print(answer, markup=False)
        return answer

    def ask_done(self) -> str | None:
        """Say that every text is decided; return the answer (``u`` undoes) or None."""
        self.console.print(
            "Every text of the file is decided: [bold]u[/] undoes the last decision, "
            "any other answer ends the session."
        )
        return self._read(())

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


def _edited_line(names: tuple[str, ...]) -> str | None:
    """Read one line on the terminal, Tab completing ``names``; None at Ctrl-D, q at Ctrl-C."""
    _complete_with(names)
    try:
        line = input("> ")
    except KeyboardInterrupt:
        print()
        return "q"
    except EOFError:
        print()
        return None
    return without_keys(line)


def _complete_with(names: tuple[str, ...]) -> None:
    """Make Tab complete ``names`` (whole answers, any case) where readline exists."""
    try:
        import readline
    except ImportError:  # no readline (Windows): the console's own line editing
        return

    def complete(text: str, state: int) -> str | None:
        matches = [name for name in names if name.lower().startswith(text.lower())]
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims("")  # a label may hold spaces: complete the whole line
    readline.set_completer(complete)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
        readline.parse_and_bind("set completion-ignore-case on")
        # A paste is typed as it is: its newline answers, as when the name is typed.
        readline.parse_and_bind("set enable-bracketed-paste off")


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
