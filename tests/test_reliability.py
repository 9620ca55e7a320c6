"""Reliability (issue 14, rows 4 and 5 and "Also"): races, damage, read-only, kills, schemas.

Every process here is real: the concurrency test starts ``python -m fewshot`` with Popen; the
crash tests, which kill many processes, fork them from a server that imported torch once
(``tests/fork_cli.py``). The kill delays come from ``random.Random(seed)``. The read-only
workspaces are made read-only for root too (an immutable file, a read-only bind mount), since
root ignores permission bits.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fork_cli import Fewshot

from fewshot.cli import cli
from fewshot.errors import DataError
from fewshot.storage.store import DB_NAME, SCHEMA_VERSION
from fewshot.tasks.train import is_training, training_lock
from fewshot.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "examples" / "tickets.csv"
OLD_WORKSPACE = ROOT / "tests" / "data" / "workspace_95bbbe4"
LABELS = ("refund", "shipping", "account")


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(result: Result, *fragments: str) -> None:
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = result.stderr[result.stderr.index("Error: ") :]
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def numbered(prefix: str, numbers: range) -> list[tuple[str, str]]:
    return [(f"{prefix} text number {i}", LABELS[i % 3]) for i in numbers]


def tickets_store(path: Path, **settings: Any) -> Path:
    """A workspace holding examples/tickets.csv that never trains on its own, closed."""
    with Workspace.create(path) as ws:
        ws.config("train", "never")
        for key, value in settings.items():
            ws.config(key, str(value))
        ws.import_file(TICKETS)
    assert not (path / f"{DB_NAME}-wal").exists()  # checkpointed: the file holds everything
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# -- row 4: two imports at once --------------------------------------------------------------


def during_encoding(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, other: Callable[[], Any]
) -> None:
    """Run ``other`` (a write on another connection) while ``ws`` encodes: the race's window.

    The first import has checked the stored texts and is encoding (the slow part, outside any
    lock) when the second commits; only the timing is forced, every part is real.
    """
    encode = ws.corpus.encoder.encode
    pending = [other]

    def racing(texts: list[str], **kwargs: Any) -> Any:
        while pending:
            pending.pop()()
        return encode(texts, **kwargs)

    monkeypatch.setattr(ws.corpus.encoder, "encode", racing)


def test_two_imports_of_the_same_rows_at_once_end_as_already_labeled(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.create(store_dir).close()
    with Workspace.open(store_dir) as first, Workspace.open(store_dir) as second:
        during_encoding(first, monkeypatch, lambda: second.import_file(TICKETS, train="never"))
        result = first.import_file(TICKETS, train="never")
        assert (result.added, result.unchanged) == (0, 24)
        texts = [e.text for e in first.examples()]
    assert len(texts) == 24
    assert len(set(texts)) == 24


def test_two_imports_of_conflicting_labels_at_once_refuse_the_later_one(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = "I want my money back for this order"  # refund in tickets.csv
    theirs = write_rows(tmp_path / "theirs.csv", [(ticket, "account"), ("only theirs", "refund")])
    Workspace.create(store_dir).close()
    with Workspace.open(store_dir) as first, Workspace.open(store_dir) as second:
        during_encoding(first, monkeypatch, lambda: second.import_file(theirs, train="never"))
        with pytest.raises(DataError) as refused:
            first.import_file(TICKETS, train="never")
        stored = {(e.text, e.label) for e in first.examples()}
    message = str(refused.value)
    assert "tickets.csv, line 2" in message
    assert "already labeled 'account'" in message
    assert "not 'refund'" in message
    assert stored == {(ticket, "account"), ("only theirs", "refund")}  # nothing of the loser


# -- row 4: a damaged database ---------------------------------------------------------------


def damage(db: Path, table: str, length: int) -> None:
    """Overwrite ``length`` bytes with 0xFF where the rows of ``table``'s root page start."""
    conn = sqlite3.connect(db)
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    start = (page[0] - 1) * size
    cells = start + int.from_bytes(data[start + 5 : start + 7], "big")  # the page's cell area
    assert start + size // 4 < cells < start + size - length  # inside the page, past its middle
    data[cells : cells + length] = b"\xff" * length
    db.write_bytes(bytes(data))


COMMANDS = [
    ["status"],
    ["classify", "where is my parcel"],
    ["export"],
    ["add", "--label", "refund", "a new text"],
    ["import", str(TICKETS)],
]


@pytest.mark.parametrize(
    ("table", "length", "commands"),
    [
        ("settings", 64, [*COMMANDS, ["config"], ["config", "k", "3"]]),
        ("examples", 512, COMMANDS),
    ],
    ids=["settings-page", "examples-page"],
)
def test_a_damaged_database_is_an_error_naming_it_never_a_traceback(
    tmp_path: Path, table: str, length: int, commands: list[list[str]]
) -> None:
    store = tickets_store(tmp_path / "ws")
    db = store / DB_NAME
    damage(db, table, length)
    damaged = db.read_bytes()
    for args in commands:
        result = run(store, *args)
        fails(result, f"{db}: the workspace database is damaged", "backup", "fewshot --store")
        assert "export" in result.stderr, args
        assert db.read_bytes() == damaged, args  # changes nothing


# -- row 5: a read-only workspace ------------------------------------------------------------


def _make_read_only(directory: Path) -> Callable[[], None]:
    """Make ``directory`` read-only for this process; return what undoes it.

    Root ignores permission bits, so root makes every file and directory immutable
    (``chattr +i``, which binds root too); another user removes the write permissions.
    """
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(directory)], check=True)
        return lambda: subprocess.run(["chmod", "-R", "u+w", str(directory)], check=True)
    done = subprocess.run(["chattr", "-R", "+i", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"chattr +i is refused here ({done.stderr.strip()}): no read-only file for root"
        )
    return lambda: subprocess.run(["chattr", "-R", "-i", str(directory)], check=True)


def _mount_read_only(directory: Path, view: Path) -> Callable[[], None]:
    """Show ``directory`` at ``view`` through a read-only bind mount; return the unmount."""
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(directory), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a bind mount is refused here ({mounted.stderr.decode().strip()})")
    remount = ["mount", "-o", "remount,bind,ro", str(view)]
    if subprocess.run(remount, capture_output=True).returncode != 0:
        subprocess.run(["umount", str(view)], check=True)
        pytest.skip("a read-only remount is refused here")

    def unmount() -> None:
        if subprocess.run(["umount", str(view)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(view)], check=True)  # a file still open

    return unmount


@pytest.fixture(params=["immutable", "read-only-mount"])
def read_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The tickets workspace, read-only; three examples lack their stored embedding."""
    store = tickets_store(tmp_path / "ws")
    conn = sqlite3.connect(store / DB_NAME)
    with conn:
        conn.execute("DELETE FROM embeddings WHERE example_id IN (2, 9, 17)")
    conn.close()
    for cache in ("vectors.faiss", "vectors.json"):
        (store / cache).unlink(missing_ok=True)
    if request.param == "immutable":
        undo, seen = _make_read_only(store), store
    else:
        if os.geteuid() != 0:
            pytest.skip("a bind mount needs root")
        seen = tmp_path / "view"
        undo = _mount_read_only(store, seen)
    try:
        with pytest.raises(OSError):  # the condition binds this process, root included
            (seen / "probe").write_text("x")
        yield seen
    finally:
        undo()


def test_read_commands_work_on_a_read_only_workspace(read_only: Path) -> None:
    before = files_of(read_only)
    status = json.loads(ok(run(read_only, "status", "--format", "json")).stdout)
    assert status["examples"] == 24
    assert status["training"] is False
    answers = ok(run(read_only, "classify", "--format", "jsonl", "I was charged twice"))
    assert json.loads(answers.stdout)["label"] == "refund"
    exported = ok(run(read_only, "export")).stdout.splitlines()
    assert len(exported) == 24
    assert "min_per_label = 8" in ok(run(read_only, "config")).stdout
    assert "refund" in ok(run(read_only, "prompt", "my parcel is late")).stdout
    report = json.loads(ok(run(read_only, "eval", str(TICKETS), "--format", "json")).stdout)
    assert report["accuracy"] > 0.9
    assert files_of(read_only) == before  # no cache, no embedding, no WAL file written
    assert not (read_only / "vectors.faiss").exists()


WRITING = [
    ["add", "--label", "refund", "a new text"],
    ["import", str(TICKETS)],
    ["config", "k", "3"],
    ["config", "k", "--unset"],
    ["train", "--force"],
    ["rollback"],
    ["label", str(ROOT / "examples" / "new_tickets.txt")],
]


def test_writing_commands_say_the_workspace_is_read_only(read_only: Path) -> None:
    before = files_of(read_only)
    for args in WRITING:
        result = run(read_only, *args)
        fails(result, f"{read_only}: the workspace is read-only")
        assert files_of(read_only) == before, args


# -- schemas -----------------------------------------------------------------------------------


def test_an_old_read_only_workspace_reads_without_migrating(tmp_path: Path) -> None:
    store = tmp_path / "old"
    shutil.copytree(OLD_WORKSPACE, store)
    header = (store / DB_NAME).read_bytes()[60:64]  # PRAGMA user_version, in the file header
    assert int.from_bytes(header, "big") == 1 < SCHEMA_VERSION
    conn = sqlite3.connect(store / DB_NAME)
    count = conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
    conn.close()
    undo = _make_read_only(store)
    try:
        status = json.loads(ok(run(store, "status", "--format", "json")).stdout)
        assert status["examples"] == count > 20
        assert len(ok(run(store, "export")).stdout.splitlines()) == count
        fails(run(store, "add", "--label", "refund", "new"), "the workspace is read-only")
    finally:
        undo()
    assert (store / DB_NAME).read_bytes()[60:64] == header  # not migrated


def test_a_workspace_of_a_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    store = tickets_store(tmp_path / "ws")
    conn = sqlite3.connect(store / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for args in (["status"], ["export"], ["add", "--label", "refund", "new"]):
        fails(run(store, *args), "made by a newer fewshot", f"schema {SCHEMA_VERSION + 1}")


# -- concurrency: real processes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Fewshot:
    """Starts fewshot processes from a forkserver, warmed up (its imports are done)."""
    forks = Fewshot(tmp_path_factory.mktemp("children"))
    assert forks.run("--version")[0] == 0
    return forks


Started = Callable[[Path, list[str]], Callable[[], tuple[int, str]]]
"""Starts ``fewshot --store STORE ARGS``; what it returns waits for the exit code and output."""


def by_popen(store: Path, args: list[str]) -> Callable[[], tuple[int, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fewshot", "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=store.parent,
    )

    def finish() -> tuple[int, str]:
        out, _ = process.communicate(timeout=600)
        return process.returncode, out

    return finish


def by_fork(forks: Fewshot) -> Started:
    def start(store: Path, args: list[str]) -> Callable[[], tuple[int, str]]:
        child = forks.start("--store", str(store), *args)

        def finish() -> tuple[int, str]:
            code = child.wait(600)
            assert code is not None, f"fewshot {args} ran over 600 s"
            return code, child.output

        return finish

    return start


ADDED = re.compile(r"Added (\d+) example\(s\) .*\((\d+) already labeled")


def two_imports_and_a_classify(tmp_path: Path, start: Started) -> None:
    """Two overlapping imports and a classify at once: all succeed, each row is stored once."""
    store = tickets_store(tmp_path / "ws")
    first = write_rows(tmp_path / "first.csv", numbered("concurrent", range(30)))
    second = write_rows(tmp_path / "second.csv", numbered("concurrent", range(10, 40)))
    queries = ROOT / "examples" / "new_tickets.txt"
    waits = [
        start(store, ["import", str(first)]),
        start(store, ["import", str(second)]),
        start(store, ["classify", "--input", str(queries), "--format", "jsonl"]),
    ]
    results = [wait() for wait in waits]
    assert [code for code, _ in results] == [0, 0, 0], results
    counts = [ADDED.search(out) for _, out in results[:2]]
    assert all(counts), results
    added = sum(int(m.group(1)) for m in counts if m)
    unchanged = sum(int(m.group(2)) for m in counts if m)
    assert (added, unchanged) == (40, 20)  # the overlap is "already labeled" for the later one
    answers = [json.loads(line) for line in results[2][1].splitlines() if line.startswith("{")]
    assert len(answers) == len(queries.read_text(encoding="utf-8").splitlines())
    with Workspace.open(store) as ws:
        texts = Counter(e.text for e in ws.examples())
        memory = ws.memory()
    assert set(texts.values()) == {1}
    assert {t for t, _ in numbered("concurrent", range(40))} <= set(texts)
    assert len(texts) == 24 + 40
    assert memory.index.count == 64


def test_two_imports_and_a_classify_at_once_all_succeed(forks: Fewshot, tmp_path: Path) -> None:
    two_imports_and_a_classify(tmp_path, by_fork(forks))


@pytest.mark.slow
def test_two_imports_and_a_classify_at_once_as_python_m_fewshot(tmp_path: Path) -> None:
    two_imports_and_a_classify(tmp_path, by_popen)


def test_two_conflicting_imports_at_once_one_wins_whole(forks: Fewshot, tmp_path: Path) -> None:
    store = tickets_store(tmp_path / "ws")
    ours = numbered("conflict", range(20))
    theirs = [(ours[5][0], "other"), *numbered("theirs", range(5))]
    files = [write_rows(tmp_path / "ours.csv", ours), write_rows(tmp_path / "theirs.csv", theirs)]
    waits = [by_fork(forks)(store, ["import", str(file)]) for file in files]
    results = [wait() for wait in waits]
    assert sorted(code for code, _ in results) == [0, 1], results
    ours_won = results[0][0] == 0
    message = results[1 if ours_won else 0][1]
    assert "Traceback" not in message
    kept, refused = ("account", "other") if ours_won else ("other", "account")
    assert ours[5][1] == "account"
    assert f"already labeled '{kept}' in the workspace, not '{refused}'" in message, message
    with Workspace.open(store) as ws:
        stored = {(e.text, e.label) for e in ws.examples()}
    winner, loser = (ours, theirs) if ours_won else (theirs, ours)
    assert set(winner) <= stored
    assert not (set(loser) - set(winner)) & stored  # nothing of the loser


# -- crashes: kill -9 at seeded random points ------------------------------------------------


def import_kills(forks: Fewshot, tmp_path: Path, kills: int, seed: int) -> Counter[str]:
    """Kill ``kills`` imports at seeded points; after each, the workspace holds all or none."""
    store = tickets_store(tmp_path / "ws")
    begin = time.monotonic()
    code, out = forks.run("--store", str(store), "import", str(write_import(tmp_path, 0)))
    assert code == 0, out
    baseline = time.monotonic() - begin
    expected = {t for t, _ in numbered("round 0", range(150))}
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for round_ in range(1, kills + 1):
        child = forks.start("--store", str(store), "import", str(write_import(tmp_path, round_)))
        code = child.wait(rng.uniform(0.2, 1.1) * baseline)
        if code is None:
            code = child.kill()
        assert code in (0, -9), child.output
        mine = {t for t, _ in numbered(f"round {round_}", range(150))}
        with Workspace.open(store) as ws:  # it opens, whole
            assert ws.store.query("PRAGMA integrity_check") == [("ok",)]
            present = {e.text for e in ws.examples()}
        assert expected <= present  # what was committed before stays
        assert present & mine in (set(), mine), f"round {round_}: part of an import"
        assert code != 0 or present & mine == mine
        expected |= present & mine
        outcomes[
            f"{'killed' if code == -9 else 'finished'}, {'all' if mine <= present else 'none'}"
        ] += 1
    return outcomes


def write_import(tmp_path: Path, round_: int) -> Path:
    return write_rows(tmp_path / f"round-{round_}.csv", numbered(f"round {round_}", range(150)))


def test_kill_9_during_imports_leaves_all_rows_or_none(forks: Fewshot, tmp_path: Path) -> None:
    outcomes = import_kills(forks, tmp_path, kills=4, seed=14)
    print("import kills:", dict(outcomes))
    assert sum(outcomes.values()) == 4


@pytest.mark.slow
def test_kill_9_during_imports_many_times(forks: Fewshot, tmp_path: Path) -> None:
    outcomes = import_kills(forks, tmp_path, kills=30, seed=1414)
    print("import kills:", dict(outcomes))
    assert outcomes["killed, none"] > 0


def train_kills(
    forks: Fewshot, tmp_path: Path, kills: int, seed: int, final_training: bool
) -> Counter[str]:
    """Kill ``kills`` trainings at seeded points; the serving model keeps serving."""
    store = tickets_store(tmp_path / "ws", min_per_label=2, max_steps=3)
    train = ("--store", str(store), "train", "--force")
    begin = time.monotonic()
    code, out = forks.run(*train)
    assert code == 0, out
    baseline = time.monotonic() - begin
    with Workspace.open(store) as ws:
        assert ws.rollback(1) == 1  # v1 serves, whatever the gate said of it
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for _ in range(kills):
        with Workspace.open(store) as ws:
            before = ws.registry.versions()
        child = forks.start(*train)
        code = child.wait(rng.uniform(0.1, 1.1) * baseline)
        if code is None:
            code = child.kill()
        assert code in (0, -9), child.output
        outcomes[check_after_training(store, before, code)] += 1
    with training_lock(store):  # a stale training.lock blocks nothing
        pass
    if final_training:
        code, out = forks.run(*train)
        assert code == 0, out
    return outcomes


def check_after_training(store: Path, before: list[Any], code: int) -> str:
    with Workspace.open(store) as ws:
        assert not is_training(store)
        after = ws.registry.versions()
        serving = ws.registry.serving()
        answer = ws.classify(["I want my money back"])[0]
        new = after[len(before) :]
        assert [m.version for m in after[: len(before)]] == [m.version for m in before]
        was = next((m.version for m in before if m.status == "serving"), None)
        if not new:  # killed before it was recorded: what served still serves
            assert (serving.version if serving else None) == was
            assert code == -9
        for model in new:
            ws.registry.load_model(model.version)  # a recorded model is whole
        assert answer.stage == ("retrieval" if serving is None else "setfit")
    return f"{'killed' if code == -9 else 'finished'}, {len(new)} new version(s)"


def test_kill_9_during_training_keeps_the_serving_model(forks: Fewshot, tmp_path: Path) -> None:
    outcomes = train_kills(forks, tmp_path, kills=1, seed=14, final_training=False)
    print("train kills:", dict(outcomes))
    assert sum(outcomes.values()) == 1


@pytest.mark.slow
def test_kill_9_during_training_many_times(forks: Fewshot, tmp_path: Path) -> None:
    outcomes = train_kills(forks, tmp_path, kills=12, seed=1414, final_training=True)
    print("train kills:", dict(outcomes))
    assert sum(outcomes.values()) == 12
