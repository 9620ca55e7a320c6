"""The Workspace API: create/open, add/import rules, round trips through disk and export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import EXAMPLES

from fewshot.dataio import read_labeled, write_labeled
from fewshot.errors import ConfigError, DataError, WorkspaceError
from fewshot.storage.store import DB_NAME
from fewshot.workspace import Workspace, resolve_store

DATA = Path(__file__).parent / "data"
NEW_TICKETS = [
    "My order still hasn't been delivered, where is it?",
    "I was billed two times for the same purchase",
    "I forgot my password and can't sign in",
    "The checkout page freezes when I press pay",
]


def labeled_set(ws: Workspace) -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in ws.examples()]


def test_add_close_reopen_gives_the_same_examples_and_predictions(store_dir: Path) -> None:
    with Workspace.create(store_dir) as ws:
        result = ws.import_file(EXAMPLES / "tickets.csv")
        examples = ws.examples()
        before = ws.classify(NEW_TICKETS, explain=True)
    assert (result.added, result.unchanged, result.relabeled) == (24, 0, 0)

    with Workspace.open(store_dir) as ws:
        assert ws.examples() == examples
        after = ws.classify(NEW_TICKETS, explain=True)

    assert [p.label for p in after] == ["shipping", "refund", "account", "technical"]
    assert [p.label for p in after] == [p.label for p in before]
    for old, new in zip(before, after):
        assert new.scores == pytest.approx(old.scores, abs=1e-6)
        assert [n.text for n in new.neighbors or ()] == [n.text for n in old.neighbors or ()]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_import_gives_the_identical_labeled_set(tmp_path: Path, fmt: str) -> None:
    source = read_labeled(DATA / "tricky.jsonl")
    with Workspace.create(tmp_path / "a") as ws:
        ws.add([t for t, _, _ in source], [lab for _, lab, _ in source])
        original = labeled_set(ws)
        buffer = io.StringIO(newline="")
        write_labeled(ws.export_rows(), fmt, buffer)
    exported = tmp_path / f"export.{fmt}"
    exported.write_bytes(buffer.getvalue().encode("utf-8"))

    with Workspace.create(tmp_path / "b") as copy:
        result = copy.import_file(exported)
        assert labeled_set(copy) == original

    assert result.added == len(source) == 10
    assert original == [(t, lab) for t, lab, _ in source]
    assert any("\u2028" in t for t, _ in original) and any("\n" in lab for _, lab in original)


def test_tricky_csv_and_jsonl_read_the_same() -> None:
    from_csv = [(t, lab) for t, lab, _ in read_labeled(DATA / "tricky.csv")]
    from_jsonl = [(t, lab) for t, lab, _ in read_labeled(DATA / "tricky.jsonl")]
    assert from_csv == from_jsonl
    assert ("first line\nsecond line\r\nthird line", "multi\nline") in from_csv


def test_an_excel_style_csv_with_bom_and_crlf_imports(workspace: Workspace, tmp_path: Path) -> None:
    file = tmp_path / "excel.csv"
    file.write_bytes(
        b'\xef\xbb\xbftext,label\r\n"Caf\xc3\xa9, please",food\r\nWhere is it?,shipping\r\n'
    )
    assert workspace.import_file(file).added == 2
    assert labeled_set(workspace) == [("Café, please", "food"), ("Where is it?", "shipping")]


def test_tsv_import(workspace: Workspace) -> None:
    result = workspace.import_file(DATA / "labels.tsv")
    assert result.added == 2
    assert workspace.store.label_counts() == {"refund": 1, "shipping": 1}


# -- duplicates and relabeling ----------------------------------------------------------------


def test_the_same_text_with_the_same_label_is_a_no_op(workspace: Workspace) -> None:
    workspace.add(["I want my money back"], "refund")
    revision = workspace.store.revision
    result = workspace.add(["  I want my money back  ", "Refund me now"], "refund")
    assert (result.added, result.unchanged, result.relabeled) == (1, 1, 0)
    assert labeled_set(workspace) == [
        ("I want my money back", "refund"),
        ("Refund me now", "refund"),
    ]
    assert workspace.store.revision == revision + 1


def test_the_same_text_with_another_label_names_both_and_adds_nothing(
    workspace: Workspace,
) -> None:
    workspace.add(["I want my money back"], "refund")
    before = labeled_set(workspace)
    with pytest.raises(DataError) as err:
        workspace.add(["A new text", "I want my money back"], "billing")
    message = str(err.value)
    assert "'refund'" in message and "'billing'" in message and "--relabel" in message
    assert "text 2" in message
    assert labeled_set(workspace) == before


def test_relabel_changes_the_stored_label(workspace: Workspace) -> None:
    workspace.add(["I want my money back", "Where is my parcel?"], ["refund", "shipping"])
    result = workspace.add(["I want my money back", "A new text"], "billing", relabel=True)
    assert (result.added, result.unchanged, result.relabeled) == (1, 0, 1)
    assert labeled_set(workspace) == [
        ("I want my money back", "billing"),
        ("Where is my parcel?", "shipping"),
        ("A new text", "billing"),
    ]
    prediction = workspace.classify(["I want my money back"])[0]
    assert prediction.label == "billing"
    assert set(prediction.scores) == {"billing", "shipping"}


def test_one_file_giving_a_text_two_labels_is_an_error(workspace: Workspace) -> None:
    workspace.add(["Something already here"], "other")
    with pytest.raises(DataError) as err:
        workspace.import_file(DATA / "conflict.csv")
    message = str(err.value)
    assert "conflict.csv, line 4" in message and "line 2" in message
    assert "'refund'" in message and "'shipping'" in message
    assert labeled_set(workspace) == [("Something already here", "other")]


def test_mismatched_texts_and_labels(workspace: Workspace) -> None:
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        workspace.add(["a", "b"], ["x"])
    assert workspace.store.count() == 0


# -- create, open, settings ---------------------------------------------------------------------


def test_create_refuses_an_existing_workspace_and_a_file(tmp_path: Path, store_dir: Path) -> None:
    Workspace.create(store_dir).close()
    with pytest.raises(WorkspaceError, match="already exists"):
        Workspace.create(store_dir)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a directory")
    with pytest.raises(WorkspaceError, match="expected a workspace directory, found a file"):
        Workspace.create(a_file)
    with pytest.raises(WorkspaceError, match="expected a workspace directory, found a file"):
        Workspace.open(a_file, create=True)
    assert a_file.read_text() == "not a directory"


def test_create_refuses_bad_settings_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"setting .min_per_label.: expected an integer >= 1"):
        Workspace.create(tmp_path / "ws", min_per_label=0)
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x00")
    with pytest.raises(ConfigError, match="expected a model directory, found a file"):
        Workspace.create(tmp_path / "ws", model=str(weights))
    assert not (tmp_path / "ws").exists()


def test_open_a_missing_workspace_or_create_a_default_one(store_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match="no workspace here"):
        Workspace.open(store_dir)
    assert not store_dir.exists()
    with Workspace.open(store_dir, create=True) as ws:
        assert ws.status()["examples"] == 0
    assert (store_dir / DB_NAME).is_file()


def test_the_store_comes_from_the_argument_then_the_environment_then_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FEWSHOT_STORE", raising=False)
    assert resolve_store(None) == Path("index")
    monkeypatch.setenv("FEWSHOT_STORE", str(tmp_path / "env"))
    assert resolve_store(None) == tmp_path / "env"
    assert resolve_store(tmp_path / "arg") == tmp_path / "arg"


def test_status_reports_the_contract_fields(tickets_workspace: Workspace) -> None:
    status = tickets_workspace.status()
    assert status["examples"] == 24
    assert status["labels"] == {"account": 6, "refund": 6, "shipping": 6, "technical": 6}
    assert status["stage"] == "retrieval"
    assert status["threshold"] == 8
    assert status["model"] is None
    assert status["models"] == []
    json.dumps(status)  # JSON-ready


def test_classify_rejects_bad_arguments(tickets_workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="k must be at least 1, got 0"):
        tickets_workspace.classify(["hello"], k=0)
    with pytest.raises(DataError, match="text 2: the text is empty or only whitespace"):
        tickets_workspace.classify(["hello", " \t\n"])


def test_classify_in_an_empty_workspace(workspace: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="no labeled examples yet"):
        workspace.classify(["hello"])


def test_the_k_setting_is_the_default_k(tickets_workspace: Workspace) -> None:
    tickets_workspace.store.set_setting("k", 3)
    prediction = tickets_workspace.classify(["Where is my parcel?"], explain=True)[0]
    assert len(prediction.neighbors or ()) == 3
    explicit = tickets_workspace.classify(["Where is my parcel?"], k=5, explain=True)[0]
    assert len(explicit.neighbors or ()) == 5
