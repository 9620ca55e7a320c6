"""The SetFit stage end to end: real training on the packaged encoder with tiny step caps.

One module-scoped workspace is trained automatically once (by the add that crosses the
threshold); the tests after it use that model. Each training here is a few optimiser steps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_server import ChatServer, Reply
from click.testing import CliRunner
from transformers import TrainerCallback

from fewshot.cli import cli
from fewshot.embed import resolve_model
from fewshot.errors import ConfigError, WorkspaceError
from fewshot.stages.setfit import SetFitConfig, SetFitModel, fresh_body, train_model
from fewshot.tasks.train import training_lock
from fewshot.workspace import Workspace

BILLING = [
    "I was charged twice on my credit card",
    "Please refund the payment for my last invoice",
    "Why is there an extra fee on my bill",
    "My invoice shows the wrong amount",
    "Cancel the charge on my card please",
    "The bill for March is too high",
    "I need a copy of my payment receipt",
    "You billed me for a plan I cancelled",
]
SHIPPING = [
    "My parcel has not arrived yet",
    "Where is my package, the tracking is stuck",
    "The delivery van never came today",
    "Can you ship the order to a new address",
    "The courier left the box at the wrong door",
    "How long does shipping to Canada take",
    "My order was lost in transit",
    "The package arrived damaged by the courier",
]
LOGIN = [
    "I forgot my password and cannot log in",
    "The login page says my account is locked",
    "Reset my password please",
    "Two factor code never reaches my phone",
    "I cannot sign in to my account",
    "My username is not recognised at login",
    "How do I change my password",
]
QUERIES = {
    "billing": "there is a strange charge on my credit card bill",
    "shipping": "the courier still has not delivered my parcel",
}
PICKLES = ("*.pkl", "*.pickle", "*.joblib", "*.bin", "*.pt", "*.pth")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A workspace whose threshold was crossed by an add (training ran with cwd elsewhere)."""
    root = tmp_path_factory.mktemp("setfit")
    cwd = root / "cwd"
    cwd.mkdir()
    ws = Workspace.create(root / "ws", min_per_label=8)
    for key, value in (("max_steps", "2"), ("gate_folds", "2")):
        ws.config(key, value)
    ws.add(BILLING, "billing")
    ws.add(SHIPPING[:7], "shipping")
    ws.add(LOGIN, "login")  # 7: stays below the threshold
    before = {"due": ws.training_due(), "models": ws.status()["models"]}
    old = Path.cwd()
    os.chdir(cwd)
    try:
        crossing = ws.add(SHIPPING[7:], "shipping")  # 8th shipping example: crosses
    finally:
        os.chdir(old)
    yield {"ws": ws, "root": root, "cwd": cwd, "before": before, "crossing": crossing}
    ws.close()


def test_below_the_threshold_nothing_trains(trained: dict[str, Any]) -> None:
    assert trained["before"] == {"due": None, "models": []}


def test_crossing_the_threshold_trains_and_records_a_version(trained: dict[str, Any]) -> None:
    report = trained["crossing"].training
    assert report is not None and report.version == 1
    assert report.reason == "2 labels reached 8 examples"
    models = trained["ws"].status()["models"]
    assert [m["version"] for m in models] == [1]
    row = models[0]
    assert row["labels"] == ["billing", "shipping"]  # login (7) is below the threshold
    assert row["n_examples"] == 16
    assert row["status"] == ("serving" if report.promoted else "rejected")
    assert 0 <= row["metrics"]["held_out_accuracy"] <= 1
    # gate_folds 2: half of each label's examples, login's 7 (answered by retrieval) too
    assert row["metrics"]["held_out"] == 4 + 4 + 4
    assert row["metrics"]["baseline"] == "retrieval"
    assert (trained["root"] / "ws" / "models" / "1" / "body" / "model.safetensors").is_file()
    assert trained["ws"].training_due() is None  # the same data does not retrain


def test_training_writes_nothing_outside_the_workspace(trained: dict[str, Any]) -> None:
    assert list(trained["cwd"].iterdir()) == []
    assert sorted(p.name for p in trained["root"].iterdir()) == ["cwd", "ws"]
    assert not list((trained["root"] / "ws" / "models").glob(".train-*"))


def test_no_pickle_files_in_the_workspace(trained: dict[str, Any]) -> None:
    ws_dir = trained["root"] / "ws"
    assert [p for pattern in PICKLES for p in ws_dir.rglob(pattern)] == []


def test_rollback_to_a_version_and_back_to_retrieval(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    assert ws.rollback(1) == 1
    assert (ws.status()["stage"], ws.status()["model"]) == ("setfit", 1)
    assert ws.rollback() is None  # no earlier version served: back to retrieval
    status = ws.status()
    assert (status["stage"], status["model"]) == ("retrieval", None)
    assert status["models"][0]["status"] == "retired"
    with pytest.raises(ConfigError, match="no model version 9; the versions are: 1"):
        ws.rollback(9)


def test_classify_answers_from_setfit_exactly_when_status_says_so(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    texts = list(QUERIES.values())
    served = ws.classify(texts)
    assert ws.status()["stage"] == "setfit"
    assert [p.stage for p in served] == ["setfit", "setfit"]
    assert [p.label for p in served] == list(QUERIES)
    assert set(served[0].scores) == {"billing", "shipping"}
    ws.rollback()
    assert ws.status()["stage"] == "retrieval"
    assert [p.stage for p in ws.classify(texts)] == ["retrieval", "retrieval"]


def test_a_configured_llm_answers_even_while_a_model_serves(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    query = QUERIES["billing"]
    with ChatServer() as server:
        server.respond(lambda request: Reply("shipping"))  # not SetFit's answer: proves the LLM
        ws.config("llm_url", server.url)
        try:
            assert ws.status()["stage"] == "llm"
            answer = ws.classify([query])[0]
        finally:
            ws.config("llm_url", unset=True)
    assert (answer.label, answer.stage) == ("shipping", "llm")
    assert len(server.chats) == 1
    assert ws.status()["stage"] == "setfit"
    assert ws.classify([query])[0].stage == "setfit"


def test_a_label_the_model_never_saw_is_still_predicted(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    ws.add(["My shoes are the wrong size, can I swap them"], "returns", train="never")
    ws.add(["I want to exchange this jacket for a bigger size"], "returns", train="never")
    [login, returns] = ws.classify(
        ["my password does not work and I am locked out of my account", "exchange these shoes"]
    )
    assert (login.label, login.stage) == ("login", "retrieval")  # below the threshold
    assert (returns.label, returns.stage) == ("returns", "retrieval")  # added after training
    assert ws.classify([QUERIES["billing"]])[0].stage == "setfit"


def test_explain_shows_neighbours_from_the_fine_tuned_encoder(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    [answer] = ws.classify([BILLING[0]], explain=True, k=3)
    assert answer.neighbors is not None and len(answer.neighbors) == 3
    assert answer.neighbors[0].text == BILLING[0]
    assert answer.neighbors[0].similarity == pytest.approx(1.0, abs=1e-4)
    ids, _ = ws.store.embeddings("setfit:v1")
    assert len(ids) == ws.store.count()


def test_reopened_workspace_gives_the_same_answers(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    texts = list(QUERIES.values())
    first = [p.to_dict() for p in ws.classify(texts)]
    copy = trained["root"] / "copy"
    shutil.copytree(trained["root"] / "ws", copy)  # another path: the model loads anew
    try:
        with Workspace.open(copy) as again:
            assert [p.to_dict() for p in again.classify(texts)] == first
    finally:
        shutil.rmtree(copy)


class _Interrupt(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_during_training_leaves_the_previous_model_serving(
    trained: dict[str, Any],
) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    before = ws.status()["models"]
    with pytest.raises(KeyboardInterrupt):
        ws.train(force=True, callbacks=[_Interrupt()])
    status = ws.status()
    assert (status["model"], status["models"], status["training"]) == (1, before, False)
    assert sorted(p.name for p in (trained["root"] / "ws" / "models").iterdir()) == ["1"]
    assert ws.classify([QUERIES["shipping"]])[0].stage == "setfit"


class _Steps(TrainerCallback):  # type: ignore[misc]
    """Records the step count of every training run it is passed to."""

    def __init__(self) -> None:
        self.max_steps: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.max_steps.append(int(state.max_steps))


def test_the_gate_trains_no_model_of_its_own_the_kept_one_continues_its_training(
    trained: dict[str, Any],
) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    ws.config("max_steps", "5")
    steps = _Steps()
    try:
        report = ws.train(force=True, callbacks=[steps])
    finally:
        ws.config("max_steps", "2")
        ws.rollback(1)
    assert report is not None
    # Two phases of one encoder (on the rest, then on the held-out part), 5 steps in all:
    # the budget of a single training; the gate's own models would add runs and steps.
    assert steps.max_steps == report.metrics["phase_steps"]
    assert len(steps.max_steps) == 2 and min(steps.max_steps) >= 1
    assert sum(steps.max_steps) == report.metrics["steps"] == 5


def test_a_running_training_is_shown_and_not_doubled(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    with training_lock(ws.path):
        assert ws.status()["training"] is True
        table = CliRunner().invoke(cli, ["--store", str(ws.path), "status"]).output
        assert "training: under way" in table
        with pytest.raises(WorkspaceError, match="a training is already under way"):
            ws.train(force=True)
        assert ws.start_background_training() is None
    assert ws.status()["training"] is False


def test_the_gate_keeps_a_collapsed_model_out_and_lets_a_better_one_in(
    trained: dict[str, Any],
) -> None:
    ws = trained["ws"]
    ws.rollback(1)
    ws.config("learning_rate", "5")  # an absurd rate: the encoder collapses
    ws.config("max_steps", "4")  # the first step's rate is 0 (warm-up): two in each phase
    try:
        worse = ws.train(force=True)
    finally:
        ws.config("learning_rate", unset=True)
        ws.config("max_steps", "2")
    assert worse.promoted is False
    assert worse.metrics["baseline"] == "setfit:v1" or worse.metrics["baseline"] == "retrieval"
    assert worse.metrics["held_out_accuracy"] < worse.metrics["retrieval_held_out_accuracy"]
    assert worse.metrics["held_out_ranking"] < worse.metrics["retrieval_held_out_ranking"]
    assert ws.status()["model"] == 1
    # Serve the collapsed model, label a few new texts, and a sane candidate must win.
    ws.rollback(worse.version)
    ws.add(
        ["The refund never reached my card", "My bank statement shows a double charge"],
        "billing",
        train="never",
    )
    ws.add(
        ["The parcel tracking has not moved in a week", "The courier lost my box"],
        "shipping",
        train="never",
    )
    leftover = ws.path / "models" / ".train-killed"  # what a SIGKILL mid-training leaves
    leftover.mkdir()
    orphan = ws.path / "models" / str(worse.version + 1)  # killed after the rename
    orphan.mkdir()
    (orphan / "junk").write_text("x")
    better = ws.train(force=True)
    assert not leftover.exists()
    assert better.version == worse.version + 1
    assert not (orphan / "junk").exists() and (orphan / "head.json").is_file()
    assert better.metrics["baseline"] == f"setfit:v{worse.version}"
    assert better.metrics["compared_on"] == 4
    # the collapsed encoder, serving, is graded by the same ranking of the same examples:
    # far below the packaged encoder's (about 0.9 here), which a mix-up would have measured
    assert better.metrics["ranking_compared"] > better.metrics["baseline_ranking"]
    assert better.metrics["baseline_ranking"] < better.metrics["retrieval_held_out_ranking"] - 0.1
    assert better.metrics["gate"] == "higher held-out accuracy"
    assert better.promoted is True
    assert ws.status()["model"] == better.version
    statuses = {m["version"]: m["status"] for m in ws.status()["models"]}
    assert statuses[worse.version] == "retired" and statuses[better.version] == "serving"
    # the table shows what the gate compared: the serving version on the 4 texts it never saw
    table = CliRunner().invoke(cli, ["--store", str(ws.path), "status"], env={"COLUMNS": "200"})
    row = next(line for line in table.output.splitlines() if f" v{better.version} " in line)
    figures = better.metrics
    assert (
        f"{figures['accuracy_compared']:.2f} vs {figures['baseline_accuracy']:.2f} "
        f"setfit:v{worse.version}, on 4"
    ) in row


def test_a_tie_on_held_out_accuracy_goes_to_the_encoder_that_ranks_better(
    tmp_path: Path,
) -> None:
    ws = Workspace.create(tmp_path / "ws", min_per_label=8)
    for key, value in (("max_steps", "8"), ("gate_folds", "2"), ("learning_rate", "1e-4")):
        ws.config(key, value)
    ws.add(BILLING, "billing", train="never")
    ws.add(SHIPPING, "shipping", train="never")
    report = ws.train(force=True)
    ws.close()
    metrics = report.metrics
    # Both answer all 8 held-out examples right (two easy labels): accuracy cannot decide.
    assert metrics["accuracy_compared"] == metrics["baseline_accuracy"] == 1.0
    assert metrics["baseline"] == "retrieval" and metrics["compared_on"] == 8
    # Fine-tuned on the other 8, the encoder puts each held-out text nearer its own label's
    # examples than the packaged encoder does, so the tie goes to the candidate.
    assert metrics["ranking_compared"] > metrics["baseline_ranking"]
    assert metrics["gate"] == "same held-out accuracy, better ranking"
    assert report.promoted is True


def test_a_serving_model_not_measurable_keeps_serving_on_a_tie(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", min_per_label=8)
    for key, value in (("max_steps", "2"), ("gate_folds", "2")):
        ws.config(key, value)
    ws.add(BILLING, "billing", train="never")
    ws.add(SHIPPING, "shipping", train="never")
    first = ws.train(force=True)
    ws.rollback(first.version)  # serve v1 whatever its gate said
    # login reaches the threshold: a new label, so none of the held-out examples is one v1
    # could be scored on (it never learned login; billing and shipping it has seen).
    result = ws.add([*LOGIN, "My account password expired"], "login", train="auto")
    ws.close()
    report = result.training
    assert report is not None and report.reason == "label 'login' reached the threshold"
    metrics = report.metrics
    assert (metrics["baseline"], metrics["serving"]) == ("retrieval", f"setfit:v{first.version}")
    # retrieval's accuracy stands in for v1's, but not the packaged encoder's ranking: no
    # ranking of v1 was measured, so a tie must keep v1 serving.
    assert metrics["baseline_ranking"] is None and metrics["ranking_compared"] is not None
    assert metrics["gate"] != "same held-out accuracy, better ranking"
    assert report.promoted is (metrics["accuracy_compared"] > metrics["baseline_accuracy"])


def test_cli_train_rollback_and_status(trained: dict[str, Any]) -> None:
    import json

    store = str(trained["root"] / "ws")
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", store, "train"])
    assert result.exit_code == 0, result.output
    assert "No training is due" in result.output
    result = runner.invoke(cli, ["--store", store, "rollback", "1"])
    assert (result.exit_code, result.output) == (0, "Now serving: v1.\n")
    status = json.loads(runner.invoke(cli, ["--store", store, "status", "--format", "json"]).output)
    assert (status["stage"], status["model"]) == ("setfit", 1)
    assert [m["version"] for m in status["models"]] == sorted(
        m["version"] for m in status["models"]
    )
    assert {"version", "metrics", "status", "created_at", "n_examples"} <= set(status["models"][0])
    table = runner.invoke(cli, ["--store", store, "status"], env={"COLUMNS": "200"}).output
    assert "model: v1" in table
    for m in status["models"]:
        row = next(line for line in table.splitlines() if f" v{m['version']} " in line)
        figures = m["metrics"]
        compared = (
            f"{figures['accuracy_compared']:.2f} vs {figures['baseline_accuracy']:.2f} "
            f"{figures['baseline']}, on {figures['compared_on']}"
        )
        assert f"│ {m['status']} " in row and compared in row
    result = runner.invoke(cli, ["--store", store, "rollback", "99"])
    assert result.exit_code == 1 and "Error: no model version 99" in result.output
    result = runner.invoke(cli, ["--store", store, "config", "min_per_label", "zero"])
    assert result.exit_code == 1
    assert "expected an integer >= 1, got 'zero'" in result.output
    result = runner.invoke(cli, ["--store", store, "train", "--force"])
    assert result.exit_code == 0, result.output
    assert "Trained SetFit model v" in result.output and "held-out accuracy" in result.output
    status = json.loads(runner.invoke(cli, ["--store", store, "status", "--format", "json"]).output)
    newest = status["models"][-1]
    verdict = "serves now" if newest["status"] == "serving" else "still serves"
    assert f"{verdict} ({newest['metrics']['gate']}).\n" in result.output


def test_a_saved_model_loads_with_the_same_predictions(tmp_path: Path) -> None:
    # Three labels: sklearn's multi-class coef_ is Fortran-ordered, which once loaded back
    # transposed (a two-label head never showed it).
    texts = BILLING[:4] + SHIPPING[:4] + LOGIN[:4]
    labels = ["billing"] * 4 + ["shipping"] * 4 + ["login"] * 4
    work = tmp_path / "work"
    work.mkdir()
    model = train_model(
        fresh_body(resolve_model("default")), texts, labels, SetFitConfig(max_steps=1), work
    )
    model.save(tmp_path / "saved")
    loaded = SetFitModel.load(tmp_path / "saved")
    assert loaded.classes == ("billing", "login", "shipping")
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-5)
    (tmp_path / "saved" / "head.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WorkspaceError, match="the model's head is missing or unreadable"):
        SetFitModel.load(tmp_path / "saved")


@pytest.mark.slow
def test_background_training_runs_detached_and_records_a_version(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        for key, value in (("max_steps", "1"), ("gate_folds", "2")):
            ws.config(key, value)
        ws.add(SHIPPING, "shipping")
        ws.add(BILLING, "billing", train="never")
        assert ws.training_due() == "2 labels reached 8 examples"
        process = ws.start_background_training()
        assert process is not None
        assert process.wait(timeout=600) == 0, (ws.path / "training.log").read_text()
        status = ws.status()
        assert ([m["version"] for m in status["models"]], status["training"]) == ([1], False)
        assert ws.training_due() is None
