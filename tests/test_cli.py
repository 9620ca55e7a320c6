"""The CLI through CliRunner: the contract's records and formats, and every bad input.

A bad input must exit 1 (2 for usage) with ``Error: ...`` on stderr naming the file and line,
no traceback, and leave the workspace exactly as it was.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import EXAMPLES

from fewshot.cli import cli
from fewshot.storage.store import DB_NAME
from fewshot.workspace import Workspace

DATA = Path(__file__).parent / "data"
LABELS = {"account", "refund", "shipping", "technical"}
TICKET_ROWS = list(csv.DictReader(io.StringIO((EXAMPLES / "tickets.csv").read_text("utf-8"))))


def run(store: Path, *args: str, input: str | None = None, env: Any = None) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], input=input, env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(result: Result, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no crash
    assert "Traceback" not in result.output
    assert result.stdout == ""
    error = result.stderr[result.stderr.index("Error: ") :]
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def snapshot(store: Path) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """Everything a user could see change: the revision, the labeled set, the status."""
    with Workspace.open(store) as ws:
        return ws.store.revision, ws.export_rows(), ws.status()


@pytest.fixture(scope="module")
def tickets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding examples/tickets.csv, built through the CLI; tests must not change it."""
    store = tmp_path_factory.mktemp("cli") / "ws"
    result = ok(run(store, "import", str(EXAMPLES / "tickets.csv")))
    assert "Added 24 example(s)" in result.output
    return store


@pytest.fixture
def unchanged(tickets: Path) -> Iterator[Path]:
    before = snapshot(tickets)
    yield tickets
    assert snapshot(tickets) == before


# -- classify: inputs and formats ---------------------------------------------------------------


def records(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).stdout.splitlines()]


def check_record(record: dict[str, Any], text: str, label: str) -> None:
    assert record["text"] == text
    assert record["label"] == label
    assert record["stage"] == "retrieval"
    assert set(record["scores"]) == LABELS
    assert sum(record["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= record["confidence"] <= 1.0
    assert record["confidence"] == record["scores"][label] == max(record["scores"].values())


def test_classify_arguments_default_to_jsonl_in_a_pipe(unchanged: Path) -> None:
    result = run(unchanged, "classify", "Where is my parcel?", "I can't log in")
    out = records(result)
    assert result.stderr == ""  # no progress bar or chatter in a pipe
    assert len(out) == 2
    check_record(out[0], "Where is my parcel?", "shipping")
    check_record(out[1], "I can't log in", "account")
    assert "neighbors" not in out[0]


QUERIES = {
    "queries.txt": [
        ("My order still hasn't been delivered, where is it?", "shipping"),
        ("I forgot my password and can't sign in", "account"),
    ],
    "queries.csv": [
        ("My order still hasn't been delivered, where is it?", "shipping"),
        ("I was billed two times for the same purchase, please give one back", "refund"),
    ],
    "queries.jsonl": [
        ("The checkout page freezes when I press pay", "technical"),
        ("I forgot my password and can't sign in", "account"),
    ],
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_classify_input_file(unchanged: Path, name: str) -> None:
    out = records(run(unchanged, "classify", "--input", str(DATA / name)))
    assert len(out) == len(QUERIES[name])
    for record, (text, label) in zip(out, QUERIES[name]):
        check_record(record, text, label)


def test_classify_stdin_after_the_arguments(unchanged: Path) -> None:
    stdin = "I want my money back\n\n  The app crashes on start  \n"
    out = records(
        run(unchanged, "classify", "Can you ship to Canada?", "--input", "-", input=stdin)
    )
    assert [(r["text"], r["label"]) for r in out] == [
        ("Can you ship to Canada?", "shipping"),
        ("I want my money back", "refund"),
        ("The app crashes on start", "technical"),
    ]


def test_classify_explain_lists_neighbours_most_similar_first(unchanged: Path) -> None:
    out = records(run(unchanged, "classify", "--explain", "--k", "4", "Where is my parcel?"))
    neighbors = out[0]["neighbors"]
    assert len(neighbors) == 4
    assert all(set(n) == {"text", "label", "similarity"} for n in neighbors)
    sims = [n["similarity"] for n in neighbors]
    assert sims == sorted(sims, reverse=True)
    assert neighbors[0] == {
        "text": "Where is my parcel? It was due on Monday",
        "label": "shipping",
        "similarity": neighbors[0]["similarity"],
    }
    stored = {(row["text"], row["label"]) for row in TICKET_ROWS}
    assert all((n["text"], n["label"]) in stored for n in neighbors)


def test_classify_json_and_csv_carry_the_same_records(unchanged: Path) -> None:
    texts = ["Where is my parcel?", 'A "quoted", comma text about a refund\nof my money']
    as_jsonl = records(run(unchanged, "classify", "--explain", *texts))
    as_json = json.loads(
        ok(run(unchanged, "classify", "--explain", "--format", "json", *texts)).stdout
    )
    as_csv = list(
        csv.DictReader(
            io.StringIO(
                ok(run(unchanged, "classify", "--explain", "--format", "csv", *texts)).stdout
            )
        )
    )
    assert as_json == as_jsonl
    assert [r["label"] for r in as_json] == ["shipping", "refund"]
    assert len(as_csv) == 2
    for row, record in zip(as_csv, as_json):
        assert row["text"] == record["text"]
        assert row["label"] == record["label"]
        assert row["stage"] == "retrieval"
        assert float(row["confidence"]) == pytest.approx(record["confidence"])
        assert json.loads(row["scores"]) == record["scores"]
        assert json.loads(row["neighbors"]) == record["neighbors"]


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of a rich table as {column: first line of the cell}, read by the column lines.

    A row's first line is a line whose text cell does not start with a neighbour's evidence
    ("  0.84  [label] ...") nor continue a wrapped cell, i.e. its other cells are not empty.
    """
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = dict(zip(names, (cell.strip() for cell in line.strip("│").split("│"))))
        if cells["label"]:
            rows.append(cells)
    return rows


def test_classify_table(unchanged: Path) -> None:
    # Near-copies of one shipping and one refund ticket of examples/tickets.csv: their labels
    # are known. The neighbours shown by --explain are tagged with labels too, so the check
    # reads the label column of each text's own row, not the whole output.
    parcel, money = "Where is my parcel?", "I want my money back for this order, please"
    args = ("classify", "--format", "table", "--explain", parcel, money)
    result = ok(run(unchanged, *args))
    assert "shipping" in result.stdout
    assert "Where is my parcel?" in result.stdout
    assert "retrieval" in result.stdout
    rows = table_rows(result.stdout)
    assert [(r["label"], r["stage"]) for r in rows] == [
        ("shipping", "retrieval"),
        ("refund", "retrieval"),
    ]
    assert rows[0]["text"] == parcel
    assert money.startswith(rows[1]["text"])  # the text cell may wrap
    assert "[refund] I want my money back" in result.stdout  # its evidence is shown too


# -- status and export ----------------------------------------------------------------------------


def test_status_json(unchanged: Path) -> None:
    status = json.loads(ok(run(unchanged, "status", "--format", "json")).stdout)
    assert status["examples"] == 24
    assert status["labels"] == {label: 6 for label in sorted(LABELS)}
    assert status["stage"] == "retrieval"
    assert status["threshold"] == 8
    assert status["model"] is None
    assert status["models"] == []


def test_status_table(unchanged: Path) -> None:
    out = ok(run(unchanged, "status")).stdout
    assert all(label in out for label in LABELS)
    assert "24 examples" in out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_gives_back_the_imported_rows(unchanged: Path, fmt: str) -> None:
    out = ok(run(unchanged, "export", "--format", fmt)).stdout
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["text"], r["label"]) for r in rows] == [(r["text"], r["label"]) for r in TICKET_ROWS]
    assert {r["source"] for r in rows} == {"import:tickets.csv"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_tricky_texts_survive_export_and_import_through_the_cli(tmp_path: Path, fmt: str) -> None:
    ok(run(tmp_path / "a", "import", str(DATA / "tricky.csv")))
    exported = tmp_path / f"labels.{fmt}"
    # stdout_bytes: Result.stdout turns "\r\n" into "\n", which a real pipe does not
    exported.write_bytes(ok(run(tmp_path / "a", "export", "--format", fmt)).stdout_bytes)
    ok(run(tmp_path / "b", "import", str(exported)))
    first = ok(run(tmp_path / "a", "export")).stdout_bytes.decode("utf-8")
    second = ok(run(tmp_path / "b", "export")).stdout_bytes.decode("utf-8")
    strip = [
        [(r["text"], r["label"]) for r in map(json.loads, out.strip("\n").split("\n"))]
        for out in (first, second)
    ]
    assert strip[0] == strip[1]
    assert len(strip[0]) == 10
    assert ("Parcel arrived 📦🎉 thanks!", "emoji 😀") in strip[0]
    assert ("first line\nsecond line\r\nthird line", "multi\nline") in strip[1]


# -- adding -------------------------------------------------------------------------------------


def test_add_creates_a_workspace_and_reads_stdin(tmp_path: Path) -> None:
    store = tmp_path / "new"
    ok(run(store, "add", "--label", "refund", "I want my money back"))
    result = ok(run(store, "add", "-l", "shipping", "-", input="Where is my parcel?\n\nLate box\n"))
    assert "Added 2 example(s)" in result.output and "3 in all" in result.output
    assert snapshot(store)[2]["labels"] == {"refund": 1, "shipping": 2}


def test_store_from_the_environment(tmp_path: Path) -> None:
    env = {"FEWSHOT_STORE": str(tmp_path / "from-env")}
    result = CliRunner().invoke(cli, ["add", "-l", "x", "some text"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-env" / DB_NAME).is_file()


def test_a_store_path_the_system_refuses_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory", encoding="utf-8")
    fails(
        run(a_file / "ws", "add", "-l", "x", "some text"),
        f"Error: cannot read or write '{a_file / 'ws'}': Not a directory",
        "--store",
    )
    assert a_file.read_text(encoding="utf-8") == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_init_then_add(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    result = ok(run(store, "init", "--min-per-label", "3"))
    assert "Created a workspace" in result.output
    assert snapshot(store)[2]["threshold"] == 3
    fails(run(store, "init"), "already exists")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    store = tmp_path / "small"
    ok(run(store, "add", "--label", "refund", "I want my money back", "Refund my order"))
    ok(run(store, "add", "--label", "shipping", "Where is my parcel?"))
    return store


def test_a_duplicate_with_the_same_label_is_a_no_op(small: Path) -> None:
    before = snapshot(small)
    result = ok(run(small, "add", "--label", "refund", "I want my money back"))
    assert "Added 0 example(s)" in result.output and "1 already labeled" in result.output
    assert snapshot(small) == before


def test_the_same_text_with_another_label_is_an_error_until_relabel(small: Path) -> None:
    before = snapshot(small)
    fails(
        run(small, "add", "--label", "billing", "New text", "I want my money back"),
        "already labeled 'refund'",
        "not 'billing'",
        "--relabel",
    )
    assert snapshot(small) == before

    result = ok(run(small, "add", "--relabel", "--label", "billing", "I want my money back"))
    assert "1 relabeled" in result.output
    rows = [json.loads(line) for line in ok(run(small, "export")).stdout.splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [
        ("I want my money back", "billing"),
        ("Refund my order", "refund"),
        ("Where is my parcel?", "shipping"),
    ]


def test_import_relabel(small: Path, tmp_path: Path) -> None:
    file = tmp_path / "more.csv"
    file.write_text("text,label\nWhere is my parcel?,delivery\nA brand new one,delivery\n", "utf-8")
    fails(run(small, "import", str(file)), "more.csv, line 2", "'shipping'", "'delivery'")
    result = ok(run(small, "import", "--relabel", str(file)))
    assert "Added 1 example(s)" in result.output and "1 relabeled" in result.output
    assert snapshot(small)[2]["labels"] == {"delivery": 2, "refund": 2}


# -- every bad input: Error, exit 1 (2 for usage), nothing changed ------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


BAD: dict[str, tuple[Any, list[str], int]] = {
    "missing file": (lambda t: ["import", str(t / "nope.csv")], ["nope.csv: no such file"], 1),
    "unknown format": (
        lambda t: ["import", _write(t, "labels.xlsx", b"PK\x03\x04")],
        ["labels.xlsx: unknown file format '.xlsx'", ".csv", ".jsonl", ".tsv"],
        1,
    ),
    "no label column": (
        lambda t: ["import", str(DATA / "no_label.csv")],
        ["no_label.csv, line 2: no 'label' column", "'category'", "--label-field"],
        1,
    ),
    "no text field": (
        lambda t: ["import", str(DATA / "no_text.jsonl")],
        ["no_text.jsonl, line 1: no 'text'", "'body'", "--text-field"],
        1,
    ),
    "wrong --label-field": (
        lambda t: ["import", "--label-field", "tag", str(DATA / "labels.tsv")],
        ["labels.tsv, line 2: no 'tag'"],
        1,
    ),
    "broken JSONL last line": (
        lambda t: ["import", str(DATA / "broken.jsonl")],
        ["broken.jsonl, line 3: not valid JSON"],
        1,
    ),
    "JSONL line not an object": (
        lambda t: ["import", str(DATA / "not_object.jsonl")],
        ["not_object.jsonl, line 2: expected a JSON object, found list"],
        1,
    ),
    "invalid UTF-8 on the last line": (
        lambda t: ["import", _write(t, "latin1.csv", b"text,label\nfine,refund\ncaf\xe9,refund\n")],
        ["latin1.csv, line 3: invalid UTF-8 (byte 0xe9)", "UTF-8"],
        1,
    ),
    "whitespace label on the last row": (
        lambda t: ["import", str(DATA / "blank_label_last.csv")],
        ["blank_label_last.csv, line 4: the label is empty or only whitespace"],
        1,
    ),
    "whitespace text": (
        lambda t: ["import", str(DATA / "blank_text.jsonl")],
        ["blank_text.jsonl, line 2: the text is empty or only whitespace"],
        1,
    ),
    "short CSV row": (
        lambda t: ["import", str(DATA / "short_row.csv")],
        ["short_row.csv, line 3: expected a label under 'label', found none"],
        1,
    ),
    "header only": (
        lambda t: ["import", str(DATA / "header_only.csv")],
        ["header_only.csv: no rows found"],
        1,
    ),
    "one text, two labels in one file": (
        lambda t: ["import", str(DATA / "conflict.csv")],
        ["conflict.csv, line 4", "'refund'", "'shipping'", "line 2"],
        1,
    ),
    "import a directory": (lambda t: ["import", str(t)], ["is a directory"], 2),
    "whitespace label in add": (
        lambda t: ["add", "--label", "  ", "fine text"],
        ["the label is empty or only whitespace"],
        1,
    ),
    "empty text in add": (
        lambda t: ["add", "--label", "refund", "fine text", ""],
        ["text 2: the text is empty or only whitespace"],
        1,
    ),
    "add without texts": (lambda t: ["add", "--label", "refund"], ["Missing argument"], 2),
    "k = 0": (lambda t: ["classify", "--k", "0", "hello"], ["'--k'", "0 is not in the range"], 2),
    "k < 0": (lambda t: ["classify", "--k", "-3", "hello"], ["'--k'"], 2),
    "classify nothing": (lambda t: ["classify"], ["give TEXT arguments or --input"], 2),
    "classify a blank text": (lambda t: ["classify", "ok", " "], ["text 2: the text is empty"], 1),
    "classify a missing input": (
        lambda t: ["classify", "--input", str(t / "inbox.txt")],
        ["inbox.txt: no such file"],
        1,
    ),
    "classify invalid UTF-8 input": (
        lambda t: ["classify", "--input", _write(t, "in.txt", b"one\ntwo\n\xff\xfe\n")],
        ["in.txt, line 3: invalid UTF-8 (byte 0xff)"],
        1,
    ),
    "unknown classify format": (
        lambda t: ["classify", "--format", "xml", "hello"],
        ["'--format'", "'xml' is not one of"],
        2,
    ),
    "unknown export format": (lambda t: ["export", "--format", "xml"], ["'--format'"], 2),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_an_error_and_changes_nothing(
    unchanged: Path, tmp_path: Path, case: str
) -> None:
    args, fragments, code = BAD[case]
    fails(run(unchanged, *args(tmp_path)), *fragments, code=code)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["export"],
        ["classify", "hello"],
        ["add", "--label", "x", "hello"],
        ["import", str(DATA / "labels.tsv")],
        ["init"],
    ],
    ids=lambda args: args[0],
)
def test_a_store_that_is_a_file(tmp_path: Path, args: list[str]) -> None:
    store = tmp_path / "store.txt"
    store.write_text("just a file\n")
    fails(run(store, *args), "store.txt: expected a workspace directory, found a file")
    assert store.read_text() == "just a file\n"


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["export"],
        ["classify", "hello"],
        ["add", "--label", "x", "hello"],
        ["import", str(DATA / "labels.tsv")],
    ],
    ids=lambda args: args[0],
)
def test_a_database_file_that_is_not_a_database(tmp_path: Path, args: list[str]) -> None:
    store = tmp_path / "ws"
    store.mkdir()
    garbage = b"garbage, not SQLite \x00\x01\xff" * 64
    (store / DB_NAME).write_bytes(garbage)
    fails(run(store, *args), f"{DB_NAME}: not a fewshot workspace database")
    assert (store / DB_NAME).read_bytes() == garbage
    assert [p.name for p in store.iterdir()] == [DB_NAME]


@pytest.mark.parametrize("args", [["status"], ["export"], ["classify", "hello"]], ids=str)
def test_commands_that_need_a_workspace_do_not_create_one(tmp_path: Path, args: list[str]) -> None:
    fails(run(tmp_path / "none", *args), "no workspace here", "fewshot init")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["import", str(DATA / "broken.jsonl")], "broken.jsonl, line 3"),
        (["import", str(DATA / "blank_label_last.csv")], "blank_label_last.csv, line 4"),
        (["add", "--label", " ", "fine text"], "--label: the label is empty"),
        (["add", "--label", "refund", "fine", "\t"], "text 2: the text is empty"),
    ],
    ids=["broken import", "blank label in file", "blank --label", "blank text"],
)
def test_a_failed_add_or_import_into_a_new_store_creates_nothing(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    fails(run(tmp_path / "new", *args), fragment)
    assert not (tmp_path / "new").exists()


def test_classify_in_an_empty_workspace(tmp_path: Path) -> None:
    ok(run(tmp_path / "empty", "init"))
    fails(run(tmp_path / "empty", "classify", "hello"), "no labeled examples yet", "fewshot add")


def test_a_bad_import_into_a_new_store_creates_no_workspace(tmp_path: Path) -> None:
    store = tmp_path / "new"
    fails(run(store, "import", str(DATA / "conflict.csv")), "conflict.csv, line 4", "'shipping'")
    assert not (store / "fewshot.sqlite").exists()
