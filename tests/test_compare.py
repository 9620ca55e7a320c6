"""`eval` measures calibration, and `eval --compare` puts every stage side by side.

The LLM stage is a real local HTTP server speaking the chat-completions API
(tests/chat_server.py), scripted to answer right on a known share of texts, so each stage's
accuracy is known before the run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from chat_server import ChatServer, Recorded, Reply
from click.testing import CliRunner, Result

from fewshot.cli import cli
from fewshot.metrics import expected_calibration_error
from fewshot.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TICKETS = list(csv.DictReader((ROOT / "examples" / "tickets.csv").open(encoding="utf-8")))
# Two stored examples of each label, as they are: retrieval answers each one right.
ROWS = [row for label in ("account", "refund", "shipping", "technical")
        for row in [r for r in TICKETS if r["label"] == label][:2]]  # fmt: skip


pytestmark = pytest.mark.usefixtures("no_llm_env")


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args])


def test_the_ece_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    # bin (0.9, 1]: 2 answers at 0.95, 1 right -> |0.5 - 0.95| = 0.45, weight 1/2
    # bin (0.5, 0.6]: 2 answers at 0.55, both right -> |1 - 0.55| = 0.45, weight 1/2
    assert expected_calibration_error([0.95, 0.95, 0.55, 0.55], [True, False, True, True]) == (
        pytest.approx(0.45)
    )
    # 10 answers at 0.8, 8 right: calibrated
    assert expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)
    assert expected_calibration_error([], []) == 0.0
    assert expected_calibration_error([0.0, 1.0], [False, True]) == pytest.approx(0.0)


def test_eval_reports_the_ece_of_the_answers_it_gave(
    tickets_workspace: Workspace, eval_file: Path
) -> None:
    store = tickets_workspace.path
    report = json.loads(run(store, "eval", str(eval_file), "--format", "json").stdout)
    answers = [json.loads(line) for line in run(store, "classify", "--input", str(eval_file),
               "--format", "jsonl").stdout.splitlines()]  # fmt: skip
    assert [a["label"] for a in answers] == [r["label"] for r in ROWS]  # all right
    mean_confidence = sum(a["confidence"] for a in answers) / len(answers)
    assert report["accuracy"] == 1.0
    # every answer right: the ECE is the mean shortfall of the confidence from 1, bin by bin
    assert report["ece"] == pytest.approx(1.0 - mean_confidence, abs=1e-6)
    assert report["ece"] > 0  # retrieval's scores are softmaxes: never exactly 1
    table = run(store, "eval", str(eval_file))
    assert f"ECE={report['ece']:.3f}" in table.stdout


def test_compare_puts_retrieval_and_the_llm_side_by_side(
    tickets_workspace: Workspace, eval_file: Path, server: ChatServer
) -> None:
    truth = {r["text"]: r["label"] for r in ROWS}
    wrong = {ROWS[0]["text"]: "refund", ROWS[3]["text"]: "shipping"}  # 2 of 8 wrong

    def responder(request: Recorded) -> Reply:
        return Reply(wrong.get(request.query, truth[request.query]))

    server.respond(responder)
    store = tickets_workspace.path
    result = run(store, "eval", str(eval_file), "--compare", "--llm-url", server.url,
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["stage"]: r for r in json.loads(result.stdout)}
    assert list(rows) == ["retrieval", "llm"]
    assert (rows["retrieval"]["accuracy"], rows["retrieval"]["llm_calls"]) == (1.0, 0)
    assert (rows["llm"]["accuracy"], rows["llm"]["llm_calls"]) == (0.75, 8)
    assert rows["llm"]["stages"] == {"llm": 8}
    assert rows["retrieval"]["stages"] == {"retrieval": 8}
    assert len([r for r in server.requests if r.method == "POST"]) == 8
    table = run(store, "eval", str(eval_file), "--compare", "--llm-url", server.url)
    lines = [line for line in table.stdout.splitlines() if "│" in line]
    assert any("retrieval" in line and "1.000" in line for line in lines)
    assert any(
        "llm" in line and "0.750" in line and line.rstrip(" │").endswith("8") for line in lines
    )


def test_compare_without_an_llm_scores_retrieval_alone(
    tickets_workspace: Workspace, eval_file: Path
) -> None:
    result = run(tickets_workspace.path, "eval", str(eval_file), "--compare", "--format", "json")
    assert [(r["stage"], r["accuracy"]) for r in json.loads(result.stdout)] == [("retrieval", 1.0)]


def test_a_pinned_stage_decides_who_answers(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    server.respond(lambda request: Reply("technical"))
    store = tickets_workspace.path
    assert run(store, "config", "llm_url", server.url).exit_code == 0
    query = ROWS[0]["text"]  # an account example: retrieval says account, the LLM technical
    auto = json.loads(run(store, "classify", query, "--format", "json").stdout)[0]
    assert (auto["label"], auto["stage"]) == ("technical", "llm")
    assert run(store, "config", "stage", "retrieval").exit_code == 0
    pinned = json.loads(run(store, "classify", query, "--format", "json").stdout)[0]
    assert (pinned["label"], pinned["stage"]) == ("account", "retrieval")
    assert len([r for r in server.requests if r.method == "POST"]) == 1  # pinned: no LLM
    assert run(store, "config", "stage", "setfit").exit_code == 0
    no_model = json.loads(run(store, "classify", query, "--format", "json").stdout)[0]
    assert (no_model["stage"], no_model["fallback"]) == ("retrieval", "no SetFit model serves")
    assert run(store, "config", "llm_url", "--unset").exit_code == 0
    assert run(store, "config", "stage", "llm").exit_code == 0
    refused = run(store, "classify", query)
    assert refused.exit_code == 1
    assert "Error: stage is llm but no LLM URL is set" in refused.stderr
