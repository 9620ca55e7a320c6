"""`fewshot label` on a real pseudo-terminal: the keys a person types, as a terminal sends them.

Each test spawns the installed ``fewshot`` console script (running this tree's code) under
pexpect on a workspace holding examples/tickets.csv (labels account, refund, shipping,
technical; ``train never``), types its answers, and reads the workspace back with
``fewshot export``. Keys are typed one at a time, each after the screen echoed the one
before, as a person types; a paste is one write of several keys.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from fewshot.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("fewshot")
START = 90  # seconds until the first question: the encoder loads, the inbox is embedded
STEP = 45  # seconds for one answer to be written and the next question drawn
LABELS = {"account", "refund", "shipping", "technical"}
INBOX = [
    "The checkout page freezes when I press pay",
    "I was billed two times for the same purchase",
    "My order still hasn't been delivered, where is it?",
    "Do you deliver on weekends?",
    "I forgot my password and can't sign in",
]
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
REPLY = re.compile(
    r"Labeled '[^'\r\n]*'|Skipped\.|Undid[^\r\n]*|Nothing to undo\.|Quit;|no label number \d+"
)


def _env(store: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "FEWSHOT_STORE": str(store),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TERM": "xterm",
    }


def _command(*args: str) -> list[str]:
    """The console script, as a user runs it (``python -m fewshot`` if it is not installed)."""
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "fewshot", *args]


@pytest.fixture
def session(
    tickets_workspace: Workspace, store_dir: Path, tmp_path: Path
) -> Iterator[pexpect.spawn]:
    """A ``fewshot label inbox.txt --order file`` on a pseudo-terminal, at its first question."""
    tickets_workspace.config("train", "never")
    tickets_workspace.close()
    inbox = tmp_path / "inbox.txt"
    inbox.write_text("\n".join(INBOX) + "\n", encoding="utf-8")
    program, *args = _command("label", str(inbox), "--order", "file")
    child = pexpect.spawn(
        program,
        args,
        env=_env(store_dir),
        encoding="utf-8",
        timeout=STEP,
        dimensions=(50, 200),
    )
    child.logfile_read = io.StringIO()
    try:
        child.expect_exact("> ", timeout=START)
        yield child
    finally:
        child.close(force=True)


def screen(child: pexpect.spawn) -> str:
    """Everything the session showed so far, without its escape sequences."""
    return ANSI.sub("", child.logfile_read.getvalue())


def type_keys(child: pexpect.spawn, keys: str) -> None:
    """Type ``keys`` one at a time, each once the screen echoed the previous one."""
    for key in keys:
        child.send(key)
        child.expect_exact(key)


def reply(child: pexpect.spawn, keys: str = "\r") -> str:
    """Send ``keys`` (Enter by default) and return the session's reply to the answer."""
    child.send(keys)
    child.expect(REPLY)
    return str(child.after)


def next_question(child: pexpect.spawn) -> None:
    child.expect_exact("> ")


def quit_session(child: pexpect.spawn) -> None:
    assert reply(child, "q\r") == "Quit;"
    child.expect(pexpect.EOF)


def exported(store: Path) -> dict[str, str]:
    result = subprocess.run(
        _command("export"),
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["text"]: row["label"] for row in rows}


def test_a_typed_name_that_starts_with_a_command_letter_is_one_label(
    session: pexpect.spawn, store_dir: Path
) -> None:
    # s, u and q begin the names; none of them skips, undoes or quits.
    type_keys(session, "shipping")
    assert reply(session) == "Labeled 'shipping'"
    next_question(session)
    type_keys(session, "urgent")
    assert reply(session) == "Labeled 'urgent'"
    next_question(session)
    type_keys(session, "question")
    assert reply(session) == "Labeled 'question'"
    next_question(session)
    quit_session(session)
    labels = exported(store_dir)
    assert {text: labels.get(text) for text in INBOX[:3]} == {
        INBOX[0]: "shipping",
        INBOX[1]: "urgent",
        INBOX[2]: "question",
    }
    assert set(labels.values()) == LABELS | {"urgent", "question"}


def test_arrow_keys_are_never_stored_a_paste_answers_at_once_and_tab_completes(
    session: pexpect.spawn, store_dir: Path
) -> None:
    # Arrow keys around a typed name: the name alone is stored.
    session.send("\x1b[A\x1b[D")
    type_keys(session, "refund")
    assert reply(session, "\x1b[C\r") == "Labeled 'refund'"
    next_question(session)
    # Up recalls the previous answer (the line editor's history); Enter answers it.
    assert reply(session, "\x1b[A\r") == "Labeled 'refund'"
    next_question(session)
    # Arrows alone and Enter: nothing typed, so Enter accepts the suggestion.
    assert reply(session, "\x1b[B\x1b[C\x1b[D\r").startswith("Labeled '")
    next_question(session)
    # A paste arrives as one write, its newline included: it answers at once.
    assert reply(session, "technical\r") == "Labeled 'technical'"
    next_question(session)
    # Tab completes a label name.
    type_keys(session, "acc")
    assert reply(session, "\t\r") == "Labeled 'account'"
    session.expect_exact("Every text of the file is decided")
    next_question(session)
    session.send("q\r")
    session.expect(pexpect.EOF)
    labels = exported(store_dir)
    assert not [label for label in labels.values() if "\x1b" in label or "[" in label]
    assert set(labels.values()) == LABELS
    assert [labels[text] for text in INBOX[:2] + INBOX[3:]] == [
        "refund",
        "refund",
        "technical",
        "account",
    ]
    assert INBOX[2] in labels


def test_label_numbers_stay_stable_when_a_label_is_added(
    session: pexpect.spawn, store_dir: Path
) -> None:
    # "billing" sorts first; it gets the next number, 5, and refund stays 2.
    type_keys(session, "billing")
    assert reply(session) == "Labeled 'billing'"
    next_question(session)
    type_keys(session, "2")
    assert reply(session) == "Labeled 'refund'"
    next_question(session)
    quit_session(session)
    shown = screen(session)
    assert re.search(r"1 account 6 .*2 refund 6 .*5 billing 1 ", shown)
    labels = exported(store_dir)
    assert (labels[INBOX[0]], labels[INBOX[1]]) == ("billing", "refund")
