"""``classify --output FILE`` on the local engine: a table in, the same rows with answers out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fewshot.cli import cli
from fewshot.workspace import Workspace

QUERIES = [
    ("q1", "My parcel has not arrived yet, where is it?", "shipping"),
    ("q2", "I was charged twice, please give me my money back", "refund"),
    ("q3", "I forgot my password and cannot log in", "account"),
    ("q4", "The app crashes every time I open it", "technical"),
]


def run(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    return result.exit_code, result.output


@pytest.fixture
def store(tickets_workspace: Workspace) -> Path:
    return tickets_workspace.path


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    path = tmp_path / "queries.parquet"
    pq.write_table(pa.table({"id": [q[0] for q in QUERIES], "text": [q[1] for q in QUERIES]}), path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_output_keeps_the_rows_in_order_and_adds_the_answers(
    store: Path, queries: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"labels{suffix}"
    code, output = run(store, "classify", "--input", str(queries), "--output", str(out))
    assert code == 0, output
    assert f"Wrote 4 row(s) to {out}" in output
    if suffix == ".parquet":
        rows = pq.read_table(out).to_pylist()
    elif suffix == ".csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [q[0] for q in QUERIES]
    assert [r["label"] for r in rows] == [q[2] for q in QUERIES]
    assert all(r["stage"] == "retrieval" for r in rows)
    scores = [r["scores"] if suffix == ".jsonl" else json.loads(r["scores"]) for r in rows]
    assert all(max(s, key=s.get) == r["label"] for s, r in zip(scores, rows))
    assert all(abs(float(r["confidence"]) - s[r["label"]]) < 1e-6 for s, r in zip(scores, rows))


def test_output_gives_the_labels_of_a_plain_classify(store: Path, tmp_path: Path) -> None:
    texts = [q[1] for q in QUERIES] * 3
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, output = run(
        store, "classify", "--input", str(source), "--output", str(out), "--batch-size", "5"
    )
    assert code == 0, output
    code, printed = run(store, "classify", "--input", str(source), "--format", "jsonl")
    expected = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in written] == [r["label"] for r in expected]
    assert [r["confidence"] for r in written] == [r["confidence"] for r in expected]
    assert [r["text"] for r in written] == texts


def test_a_bad_row_names_its_line_and_writes_nothing(store: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,fine text\n2,\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    out.write_text("the old file\n", encoding="utf-8")
    code, output = run(store, "classify", "--input", str(source), "--output", str(out))
    assert code == 1
    assert output.startswith("Error:") and "line 3" in output and "Traceback" not in output
    assert out.read_text(encoding="utf-8") == "the old file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "out.xlsx"], "unknown file format '.xlsx'"),
        (["--output", "nowhere/out.csv"], "does not exist"),
        (["--output", "out.csv", "--explain"], "not with --output"),
        (["--engine", "ray"], "give --output FILE"),
    ],
)
def test_bad_output_options_are_refused(
    store: Path, queries: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [str(tmp_path / a) if a.startswith(("out", "nowhere")) else a for a in args]
    code, output = run(store, "classify", "--input", str(queries), *args)
    assert code == 2 or output.startswith("Error:"), output
    assert code != 0 and message in output and "Traceback" not in output


def test_an_input_that_already_has_the_answer_columns_is_refused(
    store: Path, tmp_path: Path
) -> None:
    source = tmp_path / "labeled.csv"
    source.write_text("text,label\nwhere is my parcel,shipping\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    code, output = run(store, "classify", "--input", str(source), "--output", str(out))
    assert code == 1 and "already has column(s) label" in output and "fewshot eval" in output
    assert not out.exists()


def test_the_output_may_not_be_the_input(store: Path, queries: Path) -> None:
    before = queries.read_bytes()
    code, output = run(store, "classify", "--input", str(queries), "--output", str(queries))
    assert code != 0 and "is the --input file" in output
    assert queries.read_bytes() == before


def test_a_text_file_takes_one_text_a_line_whatever_the_text_field(
    store: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    lines = "\ufeffMy parcel has not arrived\n   \nI forgot my password\n"
    source.write_text(lines, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["classify", "--input", str(source), "--output", str(out), "--text-field", "body"]
    code, output = run(store, *args)
    assert code == 0, output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["My parcel has not arrived", "I forgot my password"]
    assert [r["label"] for r in rows] == ["shipping", "account"]


def test_a_column_null_in_the_first_batch_is_written_to_parquet(
    store: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    notes = [None, None, "call back", None]
    source.write_text(
        "".join(json.dumps({"text": q[1], "note": n}) + "\n" for q, n in zip(QUERIES, notes)),
        encoding="utf-8",
    )
    out = tmp_path / "out.parquet"
    args = ["classify", "--input", str(source), "--output", str(out), "--batch-size", "2"]
    code, output = run(store, *args)
    assert code == 0, output
    table = pq.read_table(out)
    assert table.column("note").to_pylist() == notes
    assert table.column("label").to_pylist() == [q[2] for q in QUERIES]
