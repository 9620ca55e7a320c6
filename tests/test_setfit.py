"""The SetFit stage end to end: real training on the packaged encoder with tiny step caps.

One module-scoped workspace is trained automatically once (by the add that crosses the
threshold) and then closed: it is read-only. A test that opens, classifies, rolls back or
trains works on its own copy of it (the ``ws`` fixture), so no test sees what another did
and the order of the tests does not matter. Each training here is a few optimiser steps.

With ``max_steps`` 2 and ``gate_folds`` 2 each phase of the gate gets one step, and the
first step's learning rate is 0 (warm-up): the candidate the gate scores has the packaged
encoder unchanged, so it ties with retrieval on accuracy, and a tie goes to the fine-tuned
model (the gate keeps a candidate out only when it is clearly worse). That is why version 1
of the shared workspace serves.
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
from fewshot.stages.finetune import SetFitConfig, fresh_body, train_model
from fewshot.stages.setfit import SetFitModel
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


def _fingerprint(root: Path) -> list[tuple[str, int, int]]:
    """Every path under ``root`` with its size and modification time: any write changes it."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace whose threshold was crossed by an add (training ran with cwd elsewhere).

    The only training of the shared workspace; it is closed afterwards and never reopened.
    """
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
    ws.close()
    fingerprint = _fingerprint(root)
    return {
        "root": root,
        "cwd": cwd,
        "before": before,
        "crossing": crossing,
        "fingerprint": fingerprint,
    }


@pytest.fixture
def trained(trained_once: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The shared trained workspace, read-only: the test fails if it wrote to it."""
    yield trained_once
    assert _fingerprint(trained_once["root"]) == trained_once["fingerprint"], (
        "the shared trained workspace was changed; work on a copy (the ws fixture)"
    )


@pytest.fixture
def ws(trained: dict[str, Any], tmp_path: Path) -> Iterator[Workspace]:
    """This test's own copy of the trained workspace, open (another path than the shared one)."""
    shutil.copytree(trained["root"] / "ws", tmp_path / "ws")
    with Workspace.open(tmp_path / "ws") as own:
        yield own


def test_below_the_threshold_nothing_trains(trained: dict[str, Any]) -> None:
    assert trained["before"] == {"due": None, "models": []}


def test_crossing_the_threshold_trains_and_records_a_version(
    trained: dict[str, Any], ws: Workspace
) -> None:
    report = trained["crossing"].training
    assert report is not None and report.version == 1
    assert report.reason == "2 labels reached 8 examples"
    status = ws.status()
    models = status["models"]
    assert [m["version"] for m in models] == [1]
    row = models[0]
    assert row["labels"] == ["billing", "shipping"]  # login (7) is below the threshold
    assert row["n_examples"] == 16
    # The scored candidate is the packaged encoder (one step at warm-up's rate 0; see the
    # module's docstring): it ties with retrieval, and the tie goes to the candidate.
    assert row["metrics"]["phase_steps"] == [1, 1]
    assert row["metrics"]["held_out_accuracy"] == row["metrics"]["baseline_accuracy"] == 1.0
    assert row["metrics"]["gate"] == "same held-out accuracy: a tie goes to the fine-tuned model"
    assert (report.promoted, row["status"], status["model"]) == (True, "serving", 1)
    assert row["metrics"]["loss"] == "pairs"  # loss auto: 2 labels take the paper's pairs
    # gate_folds 2: half of each label's examples, login's 7 (answered by retrieval) too
    assert row["metrics"]["held_out"] == 4 + 4 + 4
    assert row["metrics"]["baseline"] == "retrieval"
    # train_label_names on (the default): "billing" and "shipping" were one more text each,
    # outside the held-out figures (12 above) and the step budget
    assert row["metrics"]["label_names_trained"] == 2
    assert (trained["root"] / "ws" / "models" / "1" / "body" / "model.safetensors").is_file()
    assert ws.training_due() is None  # the same data does not retrain


def test_training_writes_nothing_outside_the_workspace(trained: dict[str, Any]) -> None:
    assert list(trained["cwd"].iterdir()) == []
    assert sorted(p.name for p in trained["root"].iterdir()) == ["cwd", "ws"]
    assert not list((trained["root"] / "ws" / "models").glob(".train-*"))


def test_no_pickle_files_in_the_workspace(trained: dict[str, Any]) -> None:
    ws_dir = trained["root"] / "ws"
    assert [p for pattern in PICKLES for p in ws_dir.rglob(pattern)] == []


def test_rollback_to_a_version_and_back_to_retrieval(ws: Workspace) -> None:
    assert ws.rollback(1) == 1
    assert (ws.status()["stage"], ws.status()["model"]) == ("setfit", 1)
    assert ws.rollback() is None  # no earlier version served: back to retrieval
    status = ws.status()
    assert (status["stage"], status["model"]) == ("retrieval", None)
    assert status["models"][0]["status"] == "retired"
    with pytest.raises(ConfigError, match="no model version 9; the versions are: 1"):
        ws.rollback(9)


def test_classify_answers_from_setfit_exactly_when_status_says_so(ws: Workspace) -> None:
    texts = list(QUERIES.values())
    assert ws.status()["stage"] == "setfit"  # v1 was promoted by the gate
    served = ws.classify(texts)
    assert ws.status()["stage"] == "setfit"
    assert [p.stage for p in served] == ["setfit", "setfit"]
    assert [p.label for p in served] == list(QUERIES)
    assert set(served[0].scores) == {"billing", "shipping"}
    ws.rollback()
    assert ws.status()["stage"] == "retrieval"
    assert [p.stage for p in ws.classify(texts)] == ["retrieval", "retrieval"]


def test_a_serving_model_refuses_a_text_far_from_every_label(ws: Workspace) -> None:
    ws.rollback(1)
    ws.config("abstain", "on")
    far = "The volcano erupted and lava flowed down the mountain"  # retrieval: billing
    refused, *near = ws.classify([far, *QUERIES.values()])
    assert (refused.stage, refused.label, refused.abstained) == ("setfit", None, True)
    assert refused.best_label in {"billing", "shipping"} and refused.scores
    assert [(p.stage, p.label, p.abstained) for p in near] == [
        ("setfit", label, False) for label in QUERIES
    ]


def test_a_configured_llm_answers_even_while_a_model_serves(ws: Workspace) -> None:
    ws.rollback(1)
    query = QUERIES["billing"]
    with ChatServer() as server:
        server.respond(lambda request: Reply("shipping"))  # not SetFit's answer: proves the LLM
        ws.config("llm_url", server.url)
        assert ws.status()["stage"] == "llm"
        answer = ws.classify([query])[0]
        ws.config("llm_url", unset=True)
    assert (answer.label, answer.stage) == ("shipping", "llm")
    assert len(server.chats) == 1
    assert ws.status()["stage"] == "setfit"
    assert ws.classify([query])[0].stage == "setfit"


def test_a_label_the_model_never_saw_is_still_predicted(ws: Workspace) -> None:
    ws.rollback(1)
    ws.add(["My shoes are the wrong size, can I swap them"], "returns", train="never")
    ws.add(["I want to exchange this jacket for a bigger size"], "returns", train="never")
    [login, returns] = ws.classify(
        ["my password does not work and I am locked out of my account", "exchange these shoes"]
    )
    assert (login.label, login.stage) == ("login", "retrieval")  # below the threshold
    assert (returns.label, returns.stage) == ("returns", "retrieval")  # added after training
    assert ws.classify([QUERIES["billing"]])[0].stage == "setfit"


def test_explain_shows_neighbours_from_the_fine_tuned_encoder(ws: Workspace) -> None:
    ws.rollback(1)
    [answer] = ws.classify([BILLING[0]], explain=True, k=3)
    assert answer.neighbors is not None and len(answer.neighbors) == 3
    assert answer.neighbors[0].text == BILLING[0]
    assert answer.neighbors[0].similarity == pytest.approx(1.0, abs=1e-4)
    ids, _ = ws.store.embeddings("setfit:v1")
    assert len(ids) == ws.store.count()


def test_reopened_workspace_gives_the_same_answers(ws: Workspace, tmp_path: Path) -> None:
    ws.rollback(1)
    texts = list(QUERIES.values())
    first = [p.to_dict() for p in ws.classify(texts)]
    assert [(p["label"], p["stage"]) for p in first] == [
        ("billing", "setfit"),
        ("shipping", "setfit"),
    ]
    copy = tmp_path / "copy"
    shutil.copytree(ws.path, copy)  # another path: the model loads anew
    with Workspace.open(copy) as again:
        assert [p.to_dict() for p in again.classify(texts)] == first


class _Interrupt(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_during_training_leaves_the_previous_model_serving(ws: Workspace) -> None:
    ws.rollback(1)
    before = ws.status()["models"]
    with pytest.raises(KeyboardInterrupt):
        ws.train(force=True, callbacks=[_Interrupt()])
    status = ws.status()
    assert (status["model"], status["models"], status["training"]) == (1, before, False)
    assert sorted(p.name for p in (ws.path / "models").iterdir()) == ["1"]
    assert ws.classify([QUERIES["shipping"]])[0].stage == "setfit"


class _Steps(TrainerCallback):  # type: ignore[misc]
    """Records the step count of every training run it is passed to."""

    def __init__(self) -> None:
        self.max_steps: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.max_steps.append(int(state.max_steps))


def test_the_gate_trains_no_model_of_its_own_the_kept_one_continues_its_training(
    ws: Workspace,
) -> None:
    ws.rollback(1)
    ws.config("max_steps", "5")
    steps = _Steps()
    report = ws.train(force=True, callbacks=[steps])
    assert report is not None
    # Two phases of one encoder (on the rest, then on the held-out part), 5 steps in all:
    # the budget of a single training; the gate's own models would add runs and steps.
    assert steps.max_steps == report.metrics["phase_steps"]
    # the first phase trains on the 8 of 16 billing/shipping examples not held out: round(2.5)
    assert steps.max_steps == [2, 3]
    assert sum(steps.max_steps) == report.metrics["steps"] == 5


def test_each_phase_trains_on_the_label_names_and_off_trains_without(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fewshot.tasks.gate as gate_module

    seen: list[list[str]] = []
    real = gate_module.fine_tune

    def recording(body: Any, texts: Any, labels: Any, *args: Any, **kwargs: Any) -> None:
        seen.append([t for t, label in zip(texts, labels) if t == label])
        real(body, texts, labels, *args, **kwargs)

    monkeypatch.setattr(gate_module, "fine_tune", recording)
    ws.train(force=True)
    assert seen == [["billing", "shipping"]] * 2  # both phases, each name under its label
    seen.clear()
    ws.config("train_label_names", "off")
    ws.train(force=True)
    assert seen == [[], []]


def test_the_objective_is_recorded_and_the_pair_objective_stays_selectable(
    tmp_path: Path,
) -> None:
    ws = Workspace.create(tmp_path / "ws", min_per_label=8)
    for key, value in (("max_steps", "2"), ("gate_folds", "2")):
        ws.config(key, value)
    ws.add(BILLING, "billing", train="never")
    ws.add(SHIPPING, "shipping", train="never")
    pairs = ws.train(force=True)
    ws.config("loss", "contrastive")
    fast = ws.train(force=True)
    ws.close()
    assert fast is not None and pairs is not None
    recipe = ("loss", "learning_rate", "epochs", "pairs_per_example", "steps")
    assert {k: fast.metrics.get(k) for k in recipe} == {
        "loss": "contrastive", "learning_rate": 1e-4, "epochs": 10.0,
        "pairs_per_example": None, "steps": 2,
    }  # fmt: skip
    assert {k: pairs.metrics.get(k) for k in recipe} == {
        "loss": "pairs", "learning_rate": 2e-5, "epochs": None,
        "pairs_per_example": 40, "steps": 2,
    }  # fmt: skip
    assert len(pairs.metrics["phase_steps"]) == 2 and pairs.metrics["loss_first"] is not None


def test_a_running_training_is_shown_and_not_doubled(ws: Workspace) -> None:
    with training_lock(ws.path):
        assert ws.status()["training"] is True
        table = CliRunner().invoke(cli, ["--store", str(ws.path), "status"]).output
        assert "training: under way" in table
        with pytest.raises(WorkspaceError, match="a training is already under way"):
            ws.train(force=True)
        assert ws.start_background_training() is None
    assert ws.status()["training"] is False


def test_the_gate_keeps_a_collapsed_model_out_and_lets_a_better_one_in(ws: Workspace) -> None:
    ws.rollback(1)
    ws.config("learning_rate", "5")  # an absurd rate: the encoder collapses
    ws.config("max_steps", "4")  # the first step's rate is 0 (warm-up): two in each phase
    worse = ws.train(force=True)
    ws.config("learning_rate", unset=True)
    ws.config("max_steps", "2")
    assert (worse.version, worse.promoted) == (2, False)
    # v1 saw every example, so it cannot be scored: the gate compares with retrieval
    assert (worse.metrics["serving"], worse.metrics["baseline"]) == ("setfit:v1", "retrieval")
    # The collapsed encoder maps every text alike, so its head answers one label: the 4
    # held-out billing texts right, the 4 shipping ones wrong, login's 4 (retrieval) right.
    assert worse.metrics["held_out_accuracy"] == pytest.approx(8 / 12)
    assert worse.metrics["retrieval_held_out_accuracy"] == 1.0
    assert worse.metrics["held_out_ranking"] < worse.metrics["retrieval_held_out_ranking"]
    # a guard keeps it out whatever the comparison says: one answer for two labels' texts
    assert worse.metrics["guard"] == "it answered 'billing' to every held-out text of its labels"
    assert worse.metrics["gate"] == f"kept out by a guard: {worse.metrics['guard']}"
    assert ws.status()["model"] == 1
    # Serve the collapsed model, label a few new texts, and a sane candidate must win.
    ws.rollback(worse.version)
    collapsed = ws.classify(list(QUERIES.values()))
    assert [(p.label, p.stage) for p in collapsed] == [("billing", "setfit")] * 2
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
    assert better.version == 3
    assert not (orphan / "junk").exists() and (orphan / "head.json").is_file()
    assert better.metrics["baseline"] == "setfit:v2"
    # v2 is scored on the 4 new texts (it never saw them): one label for all, 2 of 4 right;
    # the candidate's scored encoder is the packaged one (one step, at rate 0): all 4 right
    assert better.metrics["compared_on"] == 4
    assert (better.metrics["accuracy_compared"], better.metrics["baseline_accuracy"]) == (1.0, 0.5)
    # the collapsed encoder, serving, is graded by the same ranking of the same examples:
    # far below the packaged encoder's (about 0.9 here), which a mix-up would have measured
    assert better.metrics["ranking_compared"] > better.metrics["baseline_ranking"]
    assert better.metrics["baseline_ranking"] < better.metrics["retrieval_held_out_ranking"] - 0.1
    assert better.metrics["gate"] == (
        "higher held-out accuracy (it alone was right on 2 held-out texts, "
        "the serving stage alone on 0)"
    )
    assert better.promoted is True
    assert ws.status()["model"] == 3
    statuses = {m["version"]: m["status"] for m in ws.status()["models"]}
    assert statuses == {1: "retired", 2: "retired", 3: "serving"}
    # the table shows what the gate compared: the serving version on the 4 texts it never saw
    table = CliRunner().invoke(cli, ["--store", str(ws.path), "status"], env={"COLUMNS": "200"})
    row = next(line for line in table.output.splitlines() if " v3 " in line)
    assert "1.00 vs 0.50 setfit:v2, on 4" in row


def test_a_candidate_that_knows_a_new_label_is_measured_on_it_and_serves(
    tmp_path: Path,
) -> None:
    ws = Workspace.create(tmp_path / "ws", min_per_label=8)
    for key, value in (("max_steps", "2"), ("gate_folds", "2")):
        ws.config(key, value)
    ws.add(BILLING, "billing", train="never")
    ws.add(SHIPPING, "shipping", train="never")
    first = ws.train(force=True)
    assert (first.version, first.promoted) == (1, True)  # a tie with retrieval (docstring)
    ws.config("max_steps", "3")
    ws.config("learning_rate", "1e-4")
    # login reaches the threshold: v1 never learned it, so its held-out login texts are ones
    # v1 never saw; the serving rule (v1, retrieval for login) is scored on them.
    result = ws.add([*LOGIN, "My account password expired"], "login", train="auto")
    status = ws.status()
    ws.close()
    report = result.training
    assert report is not None and report.reason == "label 'login' reached the threshold"
    metrics = report.metrics
    assert (metrics["baseline"], metrics["serving"]) == ("setfit:v1", "setfit:v1")
    assert metrics["compared_on"] == 4  # the 4 held-out login texts (gate_folds 2 of 8)
    # Easy texts: retrieval answers login surely, so v1's rule and the candidate are both
    # right on all 4; on that tie the model that knows login serves.
    assert (metrics["accuracy_compared"], metrics["baseline_accuracy"]) == (1.0, 1.0)
    assert metrics["gate"] == "same held-out accuracy, and it knows 'login'"
    assert report.promoted is True
    assert status["model"] == 2
    assert [m["status"] for m in status["models"]] == ["retired", "serving"]


def test_cli_train_rollback_and_status(ws: Workspace) -> None:
    import json

    ws.close()  # the CLI opens the workspace itself
    store = str(ws.path)
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", store, "train"])
    assert result.exit_code == 0, result.output
    assert "No training is due" in result.output
    result = runner.invoke(cli, ["--store", store, "rollback", "1"])
    assert (result.exit_code, result.output) == (0, "Now serving: v1.\n")
    status = json.loads(runner.invoke(cli, ["--store", store, "status", "--format", "json"]).output)
    assert (status["stage"], status["model"]) == ("setfit", 1)
    assert [(m["version"], m["status"]) for m in status["models"]] == [(1, "serving")]
    assert {"version", "metrics", "status", "created_at", "n_examples"} <= set(status["models"][0])
    table = runner.invoke(cli, ["--store", store, "status"], env={"COLUMNS": "200"}).output
    assert "model: v1" in table
    # v1's gate: a tie with retrieval on all 12 held-out texts (the module's docstring)
    row = next(line for line in table.splitlines() if " v1 " in line)
    assert "│ serving " in row and "1.00 vs 1.00 retrieval, on 12" in row
    result = runner.invoke(cli, ["--store", store, "rollback", "99"])
    assert result.exit_code == 1 and "Error: no model version 99" in result.output
    result = runner.invoke(cli, ["--store", store, "config", "min_per_label", "zero"])
    assert result.exit_code == 1
    assert "expected an integer >= 1, got 'zero'" in result.output
    # No accuracy beats retrieval's (1.0 here) by more than 0.99: the candidate is kept out.
    result = runner.invoke(cli, ["--store", store, "config", "gate_margin", "0.99"])
    assert (result.exit_code, result.output) == (
        0,
        "gate_margin = 0.99  (workspace; default 0.0)\n",
    )
    result = runner.invoke(cli, ["--store", store, "train", "--force"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Trained SetFit model v2 (forced): held-out accuracy 1.000 vs retrieval 1.000; "
        "kept out; setfit:v1 still serves (held-out accuracy not higher by more than 0.99).\n"
    )
    status = json.loads(runner.invoke(cli, ["--store", store, "status", "--format", "json"]).output)
    assert [(m["version"], m["status"]) for m in status["models"]] == [
        (1, "serving"),
        (2, "rejected"),
    ]


def test_the_registry_keeps_the_last_model_until_its_files_change(ws: Workspace) -> None:
    first = ws.registry.load_model(1)
    assert ws.registry.load_model(1) is first  # a server asks per request: loaded once
    head = ws.registry.directory / "1" / "head.json"
    head.write_text(head.read_text(encoding="utf-8"), encoding="utf-8")  # rewritten, same text
    os.utime(head, ns=(head.stat().st_atime_ns, head.stat().st_mtime_ns + 10**9))
    again = ws.registry.load_model(1)
    assert again is not first
    assert ws.registry.load_model(1) is again
    texts = list(QUERIES.values())
    assert np.allclose(again.predict_proba(texts), first.predict_proba(texts))


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
