"""`fewshot label`: the loop driven through stdin, one answer per line, as a person drives it.

Every test asserts on the workspace afterwards (and on the label log, which records which
texts were asked and how they were answered).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fewshot.cli import cli
from fewshot.tasks.label import parse_answer
from fewshot.workspace import Workspace

INBOX = [
    "The checkout page freezes when I press pay",  # retrieval suggests technical
    "I was billed two times for the same purchase",
    "My order still hasn't been delivered, where is it?",
    "Do you deliver on weekends?",
    "I forgot my password and can't sign in",
]


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox.txt"
    path.write_text("\n".join([*INBOX, INBOX[0]]) + "\n", encoding="utf-8")  # one duplicate
    return path


def label(store: Path, inbox: Path, answers: str, *options: str) -> str:
    args = ["--store", str(store), "label", str(inbox), "--order", "file", *options]
    result = CliRunner().invoke(cli, args, input=answers)
    assert result.exit_code == 0, result.output
    return result.output


def labels_of(store: Path) -> dict[str, str]:
    with Workspace.open(store) as ws:
        return {e.text: e.label for e in ws.examples() if e.text in INBOX}


def log(store: Path) -> list[tuple[str, str, str | None, int]]:
    with sqlite3.connect(store / "fewshot.sqlite") as conn:
        rows = conn.execute("SELECT text, action, label, undone FROM label_log ORDER BY id")
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_accept_number_new_label_skip_quit(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    # Enter accepts; 9 is no label (asked again); 1 picks "account" although the suggestion
    # is "refund"; a typed name makes a new label; s skips; q quits before the fifth text.
    output = label(store_dir, inbox, "\n9\n1\nComplaint\ns\nq\n")
    assert labels_of(store_dir) == {
        INBOX[0]: "technical",
        INBOX[1]: "account",
        INBOX[2]: "Complaint",
    }
    assert "no label number 9" in output
    with Workspace.open(store_dir) as ws:
        assert "9" not in ws.status()["labels"]
        assert ws.status()["labels"]["Complaint"] == 1
        assert ws.store.count() == 24 + 3
    assert [(text, action) for text, action, _, _ in log(store_dir)] == [
        (INBOX[0], "label"),
        (INBOX[1], "label"),
        (INBOX[2], "label"),
        (INBOX[3], "skip"),
    ]


def test_undo_new_label_and_undo_across_sessions(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    # "newlabel" for the second text, undone: the label disappears, the text is asked again.
    output = label(store_dir, inbox, "\nnewlabel\nu\n2\nq\n")
    assert "Undid 'newlabel'" in output
    assert labels_of(store_dir) == {INBOX[0]: "technical", INBOX[1]: "refund"}
    with Workspace.open(store_dir) as ws:
        assert "newlabel" not in ws.status()["labels"]
        assert ws.store.count() == 26
    # A new session undoes the previous session's decisions, most recent first.
    label(store_dir, inbox, "u\nu\nu\nq\n")
    assert labels_of(store_dir) == {}
    with Workspace.open(store_dir) as ws:
        assert ws.store.count() == 24
    assert all(undone == 1 for _, _, _, undone in log(store_dir))


def test_undo_skip_then_label_it(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    label(store_dir, inbox, "s\nu\n4\nq\n")
    assert labels_of(store_dir) == {INBOX[0]: "technical"}
    assert log(store_dir)[0][1:] == ("skip", None, 1)


def test_undo_after_the_last_text(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    # Four skips and a label decide the file; u still undoes the label, 1 relabels the text.
    output = label(store_dir, inbox, "s\ns\ns\ns\n4\nu\n1\n")
    assert "Every text of the file is decided" in output
    assert labels_of(store_dir) == {INBOX[4]: "account"}
    assert [(action, label, undone) for _, action, label, undone in log(store_dir)][-2:] == [
        ("label", "technical", 1),
        ("label", "account", 0),
    ]


def test_resume_never_asks_again(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    label(store_dir, inbox, "\n\nq\n")
    # The second session skips whatever it asks until the input ends: it must be the others.
    label(store_dir, inbox, "s\ns\ns\ns\ns\n")
    asked = [(text, action) for text, action, _, _ in log(store_dir)]
    assert asked == [
        (INBOX[0], "label"),
        (INBOX[1], "label"),
        (INBOX[2], "skip"),
        (INBOX[3], "skip"),
        (INBOX[4], "skip"),
    ]
    # Skipped texts stay skipped in a later session, unless asked for again.
    output = label(store_dir, inbox, "\n")
    assert "0 left" in output
    assert len(labels_of(store_dir)) == 2
    label(store_dir, inbox, "1\nq\n", "--retry-skipped")
    assert labels_of(store_dir)[INBOX[2]] == "account"


def test_cold_start_and_help(store_dir: Path, inbox: Path) -> None:
    # No workspace yet: label creates one; Enter has nothing to accept.
    output = label(store_dir, inbox, "?\n\nrefund\n=s\nq\n")
    assert "no suggestion yet" in output
    assert "undo the previous decision" in output  # the help
    assert labels_of(store_dir) == {INBOX[0]: "refund", INBOX[1]: "s"}


def test_relabel_is_undone_to_the_previous_label(tickets_workspace: Workspace) -> None:
    session = tickets_workspace.label_session([INBOX[0]], order="file")
    assert session.current() is not None
    # Someone labels the text elsewhere while it is on screen; the answer relabels it.
    with Workspace.open(tickets_workspace.path) as other:
        other.add([INBOX[0]], "account")
    assert session.answer("shipping").kind == "labeled"
    assert labels_of(tickets_workspace.path) == {INBOX[0]: "shipping"}
    assert session.answer("u").kind == "undone"
    assert labels_of(tickets_workspace.path) == {INBOX[0]: "account"}


def test_case_of_a_known_label_and_literal_names(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    assert parse_answer("").kind == "accept"
    assert parse_answer("S").kind == "skip"
    assert parse_answer("12") == parse_answer(" 12 ")
    assert parse_answer("12").kind == "pick"
    assert parse_answer("=12").kind == "literal"
    assert parse_answer("=12").value == "12"
    assert parse_answer("refund").kind == "label"
    assert (parse_answer("=Refund").kind, parse_answer("=Refund").value) == ("literal", "Refund")
    # In a session of a workspace that has "refund" (6 tickets) and no "Refund": typing
    # "Refund" picks "refund" (a case typo, not a new label); "=Refund" forces a new "Refund".
    tickets_workspace.close()
    output = label(store_dir, inbox, "Refund\n=Refund\nq\n")
    assert labels_of(store_dir) == {INBOX[0]: "refund", INBOX[1]: "Refund"}
    with Workspace.open(store_dir) as ws:
        counts = ws.status()["labels"]
        assert (counts["refund"], counts["Refund"]) == (7, 1)
        assert ws.store.count() == 24 + 2
    assert "Labeled 'refund'." in output
    assert "Labeled 'Refund' (a new label)." in output
    assert [(text, action, name) for text, action, name, _ in log(store_dir)] == [
        (INBOX[0], "label", "refund"),
        (INBOX[1], "label", "Refund"),
    ]


def test_an_empty_file_is_an_error_and_creates_nothing(store_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--store", str(store_dir), "label", str(empty)])
    assert result.exit_code == 1
    assert f"Error: {empty}: no texts found" in result.output
    assert not store_dir.exists()


def test_missing_file_is_an_error_and_creates_nothing(store_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(store_dir), "label", str(tmp_path / "no")])
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "no such file" in result.output
    assert not store_dir.exists()


def _decisions(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM label_log").fetchone()[0])
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


def test_killed_session_loses_no_decision(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    env = {**os.environ, "FEWSHOT_STORE": str(store_dir)}
    command = [sys.executable, "-m", "fewshot", "label", str(inbox), "--order", "file"]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdin is not None
    proc.stdin.write("\n1\nComplaint\n")  # three answers; stdin stays open, so it waits
    proc.stdin.flush()
    db = store_dir / "fewshot.sqlite"
    try:
        for _ in range(1200):  # bounded: at most ~2 minutes of 0.1 s waits on the process
            if _decisions(db) >= 3:
                break
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)  # it must still be running, waiting for input
        assert _decisions(db) == 3
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert labels_of(store_dir) == {
        INBOX[0]: "technical",
        INBOX[1]: "account",
        INBOX[2]: "Complaint",
    }
    with Workspace.open(store_dir) as ws:
        session = ws.label_session(INBOX, order="file")
        question = session.current()
        assert question is not None
        assert question.text == INBOX[3]


@pytest.mark.slow
def test_crossing_the_threshold_trains_in_the_background_and_a_new_model_is_announced(
    store_dir: Path,
) -> None:
    with Workspace.create(store_dir, min_per_label=2) as ws:
        ws.config("max_steps", "5")
        ws.add(["I want my money back for this order"], "refund")
        ws.add(["Where is my parcel? It was due on Monday"], "shipping")
        ws.add(["I can't log in to my account"], "account")
        session = ws.label_session(INBOX[1:4], order="file")
        assert session.answer("refund").message == "Labeled 'refund'."
        crossing = session.answer("shipping")  # the second label reaches 2: training is due
        assert "SetFit training started in the background" in crossing.message
        # The training is this process's child: wait for it to exit (unless the subprocess
        # module reaped it already).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-1, 0)
        status = ws.status()
        assert status["training"] is False
        assert [m["version"] for m in status["models"]] == [1]
        with Workspace.open(store_dir) as other:
            other.rollback(1)  # serve it whether or not the gate promoted it
        reply = session.answer("s")
        assert reply.notice == "Model 1 now answers."
        question = session.current()
        assert question is None  # the three texts are decided
        assert ws.classify(["Please refund my purchase"])[0].stage == "setfit"


def test_pipe_answers_drop_escape_sequences(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    # An arrow key before a name, and a line of arrow keys alone (an empty answer: accept).
    output = label(store_dir, inbox, "\x1b[A\x1b[Brefund\n\x1b[D\x1bOP\nq\n")
    assert "Labeled 'refund'." in output
    labels = labels_of(store_dir)
    assert labels[INBOX[0]] == "refund"
    assert INBOX[1] in labels
    with Workspace.open(store_dir) as ws:
        assert set(ws.status()["labels"]) == {"account", "refund", "shipping", "technical"}
    assert parse_answer("\x1b[A\x1b[15~s\x00").kind == "skip"


def test_label_numbers_stay_stable_within_a_session(
    tickets_workspace: Workspace, store_dir: Path, inbox: Path
) -> None:
    tickets_workspace.close()
    # 1 account, 2 refund, 3 shipping, 4 technical. "zzz" gets 5; undone, its number stays
    # unused (5 picks nothing); "billing" gets 6, and 2 is still refund.
    output = label(store_dir, inbox, "zzz\nu\n5\nbilling\n2\nq\n")
    assert "no label number 5" in output
    assert "6 billing 1" in output
    assert labels_of(store_dir) == {INBOX[0]: "billing", INBOX[1]: "refund"}
