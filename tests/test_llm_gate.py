"""The gate measures a configured LLM on its held-out texts; the better measured stage serves.

The LLM is the real local chat-completions server (tests/chat_server.py), scripted to answer
right on a known share of texts, so the expected choice is known before the run:

* the end-to-end case uses twins: 18 support tickets labeled ``plain`` and the same 18 with
  " Thanks." appended labeled ``polite``. A held-out ticket's nearest labeled example is
  usually its twin, of the other label, so retrieval gets about half of the 12 held-out
  texts wrong; an LLM that answers every text right is right on 6 or more that retrieval
  misses and none it gets, and must serve (a sign test gives p <= 1/64). One that answers
  every text wrong must not, and classify must then not call it at all;
* the tie and the cap are measured on tickets retrieval answers right, with the local
  stage's answers given: a perfect LLM ties with a perfect local stage.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from chat_server import ChatServer, Recorded, Reply
from click.testing import CliRunner

from fewshot import policy
from fewshot.cli import cli
from fewshot.embed import Encoder
from fewshot.stages.llm import configured
from fewshot.tasks import llm_gate
from fewshot.values import Example
from fewshot.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TICKETS = list(csv.DictReader((ROOT / "examples" / "tickets.csv").open(encoding="utf-8")))
PLAIN = [r["text"] for r in TICKETS][:18]
TWINS = {**{t: "plain" for t in PLAIN}, **{t + " Thanks.": "polite" for t in PLAIN}}
OTHER = {"plain": "polite", "polite": "plain"}


pytestmark = pytest.mark.usefixtures("no_llm_env")


def posts(server: ChatServer) -> list[Recorded]:
    return [r for r in server.requests if r.method == "POST"]


@pytest.mark.parametrize(
    ("better", "worse", "serves"),
    [(4, 0, True), (3, 0, False), (6, 1, True), (5, 1, False), (9, 3, True), (0, 0, False),
     (2, 5, False)],
)  # fmt: skip
def test_the_llm_serves_only_when_a_sign_test_favours_it(
    better: int, worse: int, serves: bool
) -> None:
    same = 5  # texts both got right: they tell the two apart not at all
    llm = [True] * better + [False] * worse + [True] * same
    local = [False] * better + [True] * worse + [True] * same
    verdict = policy.llm_serves(llm, local)
    assert verdict.promoted is serves, verdict.reason
    assert f"right on {better} held-out texts, the local stage alone on {worse}" in verdict.reason


def test_the_gate_measures_the_llm_and_the_better_stage_serves(
    tmp_path: Path, server: ChatServer
) -> None:
    server.respond(lambda request: Reply(TWINS[request.query]))  # right on every text
    ws = Workspace.create(tmp_path / "ws", min_per_label=18)
    # gate_margin 0.9: no SetFit candidate passes it, so the local stage is retrieval
    settings = {"max_steps": "2", "train": "never", "llm_url": server.url, "gate_margin": "0.9"}
    for key, value in settings.items():
        ws.config(key, value)
    ws.add(list(TWINS), list(TWINS.values()))
    assert posts(server) == []  # adding asks the LLM nothing
    report = ws.train(force=True)
    llm = report.metrics["llm"]
    asked = posts(server)
    held_out = {r.query for r in asked}
    assert len(asked) == llm["calls"] == llm["compared_on"] == report.metrics["held_out"] == 12
    assert all(r.query not in {text for text, _ in r.demonstrations} for r in asked)
    assert (llm["accuracy"], llm["failed"], llm["local"]) == (1.0, 0, "retrieval")
    assert llm["local_accuracy"] == report.metrics["retrieval_held_out_accuracy"] <= 0.5
    assert llm["serves"] is True, llm["reason"]
    assert (llm["endpoint"], llm["model"]) == (server.url + "/chat/completions", None)
    query = PLAIN[0] + " Thanks."
    answer = ws.classify([query])[0]
    assert (answer.label, answer.stage) == ("polite", "llm")
    assert ws.status()["stage"] == "llm"
    assert ws.status()["llm"]["measured"] is True

    # The newest training decides: an LLM now wrong on every text is kept out.
    server.respond(lambda request: Reply(OTHER[TWINS[request.query]]))
    report = ws.train(force=True)
    llm = report.metrics["llm"]
    assert {r.query for r in posts(server)[13:]} == held_out  # after the classify: the same texts
    assert (llm["accuracy"], llm["serves"]) == (0.0, False)
    calls = len(posts(server))
    answer = ws.classify([query])[0]
    assert answer.stage == "retrieval"
    assert len(posts(server)) == calls  # the local stage answered: no call
    status = ws.status()
    assert (status["stage"], status["llm"]["serves"]) == ("retrieval", False)
    ws.close()
    shown = CliRunner().invoke(cli, ["--store", str(tmp_path / "ws"), "status"])
    assert "llm: 0.00 vs 0.50 retrieval, on 12 held-out texts: not better, retrieval" in (
        " ".join(shown.stdout.split())
    )

    # Another model than the one measured was never measured: it answers as configured.
    ws = Workspace.open(tmp_path / "ws")
    ws.config("llm_model", "another-model")
    assert ws.classify([query])[0].stage == "llm"
    assert ws.status()["llm"] == {"measured": False}
    ws.close()


def _measure(
    server: ChatServer, local: np.ndarray, cap: int
) -> tuple[dict[str, object] | None, list[Example]]:
    """Measure the LLM on the tickets: every third one held out, the local answers given."""
    examples = [Example(i, r["text"], r["label"]) for i, r in enumerate(TICKETS, start=1)]
    vectors = Encoder().encode([e.text for e in examples])
    held_out = np.arange(0, len(examples), 3)
    rest = np.setdiff1d(np.arange(len(examples)), held_out)
    figures = llm_gate.measure(
        examples,
        vectors,
        held_out,
        rest,
        ("retrieval", local),
        lambda memory: configured(memory, {"llm_url": server.url}, None, 4),
        cap,
        0,
    )
    return figures, [examples[i] for i in held_out]


def test_a_tie_goes_to_the_local_stage(server: ChatServer) -> None:
    truth = {r["text"]: r["label"] for r in TICKETS}
    server.respond(lambda request: Reply(truth[request.query]))
    figures, held_out = _measure(server, np.ones(8), cap=200)
    assert figures is not None
    assert (figures["accuracy"], figures["local_accuracy"]) == (1.0, 1.0)
    assert figures["serves"] is False
    assert "a tie or worse" in str(figures["reason"])
    assert sorted(r.query for r in posts(server)) == sorted(e.text for e in held_out)


def test_the_calls_are_capped_and_texts_not_measured_locally_are_not_asked(
    server: ChatServer,
) -> None:
    server.respond(lambda request: Reply("account"))
    local = np.array([1.0, 0.0, np.nan, 1.0, 0.0, 1.0, np.nan, 1.0])
    figures, held_out = _measure(server, local, cap=3)
    assert figures is not None and figures["calls"] == figures["compared_on"] == 3
    measured = {e.text for e, x in zip(held_out, local) if not np.isnan(x)}
    assert len(posts(server)) == 3 and {r.query for r in posts(server)} <= measured
    assert _measure(server, local, cap=0)[0] is None
    assert len(posts(server)) == 3  # cap 0: nothing asked


def test_the_cap_is_a_setting(tmp_path: Path) -> None:
    store = str(tmp_path / "ws")
    Workspace.create(store).close()

    def config(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--store", store, "config", "--", *args])
        return result.exit_code, result.output

    assert config("gate_llm_max_calls") == (0, "gate_llm_max_calls = 200\n")
    code, output = config("gate_llm_max_calls", "-1")
    assert code != 0 and "gate_llm_max_calls" in output and "an integer >= 0" in output
    assert config("gate_llm_max_calls", "0")[0] == 0
    assert config("gate_llm_max_calls")[1].startswith("gate_llm_max_calls = 0  (workspace")
