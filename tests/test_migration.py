"""A workspace written by an older fewshot opens, migrates and answers the same.

``tests/data/workspace_95bbbe4`` was made by the code of commit 95bbbe4 (schema 1): the
ticket examples imported, the settings ``k`` 5, ``prompt_k`` 4 and ``min_per_label`` 9, and
a labeling session on three texts (label, skip, label), so it has a ``label_log`` table made
the old way, outside the migrations. ``tests/golden/classify_95bbbe4.jsonl`` holds what that
code's ``fewshot classify --input examples/new_tickets.txt --format jsonl --explain``
printed for it. Both are committed; never regenerate them with newer code.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from fewshot.cli import cli
from fewshot.storage.store import DB_NAME, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "workspace_95bbbe4"
GOLDEN = ROOT / "tests" / "golden" / "classify_95bbbe4.jsonl"
QUERIES = ROOT / "examples" / "new_tickets.txt"


@pytest.fixture
def old_workspace(tmp_path: Path) -> Path:
    copy = tmp_path / "old"
    shutil.copytree(FIXTURE, copy)
    return copy


def version_of(path: Path) -> int:
    # immutable: reading the committed fixture must leave no -wal / -shm file beside it
    uri = f"file:{path / DB_NAME}?immutable=1"
    with sqlite3.connect(uri, uri=True) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def records_match(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    """Same records: every field equal, numbers within 1e-5 (float noise across BLAS runs)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        assert (g["text"], g["label"], g["stage"]) == (w["text"], w["label"], w["stage"])
        assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-5)
        assert g["scores"].keys() == w["scores"].keys()  # type: ignore[union-attr]
        for label, score in w["scores"].items():  # type: ignore[union-attr]
            assert g["scores"][label] == pytest.approx(score, abs=1e-5)  # type: ignore[index]
        near_g, near_w = g["neighbors"], w["neighbors"]
        assert [(n["text"], n["label"]) for n in near_g] == [  # type: ignore[union-attr]
            (n["text"], n["label"])
            for n in near_w  # type: ignore[union-attr]
        ]
        for a, b in zip(near_g, near_w):  # type: ignore[call-overload]
            assert a["similarity"] == pytest.approx(b["similarity"], abs=1e-5)


def classify_records(store: Path) -> list[dict[str, object]]:
    args = ["--store", str(store), "classify", "--input", str(QUERIES)]
    result = CliRunner().invoke(cli, [*args, "--format", "jsonl", "--explain"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_the_fixture_is_the_old_schema() -> None:
    assert version_of(FIXTURE) == 1 < SCHEMA_VERSION


def test_an_old_workspace_migrates_and_classifies_as_it_did(old_workspace: Path) -> None:
    want = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    calibrated = classify_records(old_workspace)  # the default since: tempered confidences
    assert [(r["text"], r["label"]) for r in calibrated] == [(r["text"], r["label"]) for r in want]
    near = [[(n["text"], n["label"]) for n in r["neighbors"]] for r in calibrated]
    assert near == [[(n["text"], n["label"]) for n in r["neighbors"]] for r in want]
    # the calibration does act: some confidence moved (the labels above did not)
    assert any(abs(g["confidence"] - w["confidence"]) > 1e-4 for g, w in zip(calibrated, want))
    # 95bbbe4 had no calibration: with it off, every figure is as that code printed it
    off = CliRunner().invoke(cli, ["--store", str(old_workspace), "config", "calibration", "off"])
    assert off.exit_code == 0, off.output
    records_match(classify_records(old_workspace), want)
    assert version_of(old_workspace) == SCHEMA_VERSION
    with sqlite3.connect(old_workspace / DB_NAME) as conn:
        log = conn.execute("SELECT text, action, label FROM label_log ORDER BY id").fetchall()
    assert log == [
        ("Can I get my money back for a late delivery?", "label", "refund"),
        ("hello there", "skip", None),
        ("The app crashes every time I open settings", "label", "technical"),
    ]


def test_the_comparison_fails_on_a_changed_answer(old_workspace: Path) -> None:
    want = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    CliRunner().invoke(cli, ["--store", str(old_workspace), "config", "calibration", "off"])
    got = classify_records(old_workspace)
    planted = [dict(got[0], label="refund"), *got[1:]]
    with pytest.raises(AssertionError):
        records_match(planted, want)
    nudged = [dict(got[0], confidence=float(got[0]["confidence"]) - 1e-3), *got[1:]]  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        records_match(nudged, want)


def test_the_migrated_workspace_keeps_its_settings_and_labels(old_workspace: Path) -> None:
    runner = CliRunner()
    status = runner.invoke(cli, ["--store", str(old_workspace), "status", "--format", "json"])
    assert status.exit_code == 0, status.output
    info = json.loads(status.output)
    assert info["examples"] == 26
    assert info["labels"] == {"account": 6, "refund": 7, "shipping": 6, "technical": 7}
    assert info["threshold"] == 9
    shown = runner.invoke(cli, ["--store", str(old_workspace), "config", "--format", "json"])
    values = {v["key"]: (v["value"], v["source"]) for v in json.loads(shown.output)}
    assert values["k"] == (5, "workspace")
    assert values["prompt_k"] == (4, "workspace")
    assert values["gate_folds"] == (3, "default")
    # a skipped text of the old session stays skipped: the label loop asks the other one
    inbox = old_workspace.parent / "inbox.txt"
    inbox.write_text("hello there\nIs there a phone number I can call?\n", encoding="utf-8")
    session = runner.invoke(
        cli, ["--store", str(old_workspace), "label", str(inbox)], input="account\nq\n"
    )
    assert session.exit_code == 0, session.output
    assert "hello there" not in session.output
    assert "Is there a phone number I can call?" in session.output
