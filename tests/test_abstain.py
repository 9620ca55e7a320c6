"""Abstention ("none of these"): the in-scope score, its threshold, the CLI, eval and the LLM.

The workspace is examples/tickets.csv (account, refund, shipping, technical; 6 each). Texts
about baking or football are far from every label and must be refused; a delivery question
is near `shipping` and must be answered.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from chat_server import ChatServer, Reply
from click.testing import CliRunner
from conftest import EXAMPLES
from sklearn.metrics import roc_auc_score

from fewshot.cli import cli
from fewshot.metrics import auroc
from fewshot.stages import scope
from fewshot.stages.retrieval import Vote
from fewshot.workspace import Workspace

FAR = [
    "Knead the dough for ten minutes, then bake the bread at 220 degrees",
    "The striker scored twice in the second half and the fans sang all night",
]
NEAR = [
    ("My parcel still hasn't been delivered, where is it?", "shipping"),
    ("I was charged twice, please give me my money back", "refund"),
]


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tickets") / "ws"
    with Workspace.create(path) as ws:
        ws.config("train", "never")
        ws.import_file(EXAMPLES / "tickets.csv")
        ws.memory()
    return path


@pytest.fixture
def store(_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    shutil.copytree(_template, path)
    return path


@pytest.fixture
def ws(store: Path) -> Iterator[Workspace]:
    with Workspace.open(store) as opened:
        yield opened


def run(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    return result.exit_code, result.output


def test_a_text_far_from_every_label_is_refused_and_one_near_a_label_is_not(
    ws: Workspace,
) -> None:
    ws.config("abstain", "on")
    texts = FAR + [text for text, _ in NEAR]
    answers = ws.classify(texts)
    far, near = answers[: len(FAR)], answers[len(FAR) :]
    for answer in far:
        assert answer.label is None and answer.abstained is True
        assert answer.best_label in {"account", "refund", "shipping", "technical"}
        assert answer.in_scope is not None and answer.in_scope < 0.05
        assert answer.scores and answer.confidence > 0  # the best label's scores stay shown
    for answer, (_, label) in zip(near, NEAR):
        assert (answer.label, answer.abstained) == (label, False)
        assert answer.in_scope is not None and answer.in_scope >= 0.05
    record = far[0].to_dict()
    assert record["label"] is None and record["abstained"] is True
    assert record["best_label"] == far[0].best_label


def test_abstention_is_off_by_default_and_then_names_a_label(ws: Workspace) -> None:
    assert ws.config("abstain") == {"abstain": "off"}
    answers = ws.classify(FAR)
    assert all(a.label is not None and a.abstained is None for a in answers)
    assert all("abstained" not in a.to_dict() and "in_scope" not in a.to_dict() for a in answers)
    assert all(a.in_scope is not None and a.in_scope < 0.05 for a in answers)  # still scored


def test_the_threshold_follows_the_target_and_the_labeled_set(ws: Workspace) -> None:
    memory = ws.memory()
    fitted = scope.fit(memory, Vote(k=10))
    assert fitted is not None and fitted.scored == 24  # every example: its label has 6
    # the share of the labeled examples' own leave-one-out scores refused is the target's
    for target, refused in ((0.05, 2), (0.25, 6), (0.5, 12)):
        shares = fitted.in_scope(fitted.loo)
        assert int((shares < target).sum()) == refused
        assert int((fitted.loo <= fitted.threshold(target)).sum()) == refused
    ws.config("abstain", "on")
    before = ws.status()["abstain"]
    assert before == {"on": True, "target": 0.05, **fitted.to_dict(0.05)}
    ws.add(["Where is the tracking number of my delivery?"], "shipping")
    after = ws.status()["abstain"]
    assert after["scored"] == 25 and after["threshold"] != before["threshold"]


def test_too_few_examples_set_no_threshold_and_refuse_nothing(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "small") as small:
        small.add(["I want a refund", "Where is my parcel?"], ["refund", "shipping"])
        small.config("abstain", "on")
        assert small.status()["abstain"]["threshold"] is None
        answer = small.classify([FAR[0]])[0]
        assert answer.label is not None and answer.abstained is False
        assert answer.in_scope is None


def test_cli_csv_leaves_the_label_empty_and_the_table_says_none_of_these(store: Path) -> None:
    assert run(store, "config", "abstain", "on")[0] == 0
    code, out = run(store, "classify", "--format", "csv", FAR[0], NEAR[0][0])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["label"] == "" and rows[0]["abstained"] == "True" and rows[0]["best_label"]
    assert rows[1]["label"] == "shipping" and rows[1]["abstained"] == "False"
    code, out = run(store, "classify", "--format", "table", FAR[0])
    assert code == 0 and "none of these" in out
    code, out = run(store, "status")
    assert code == 0 and "abstain: on, target 0.05; threshold" in out


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("abstain", "maybe", "expected one of off, on"),
        ("abstain_target", "0", "expected a finite number >= 0.001, <= 0.5"),
        ("abstain_target", "1.5", "expected a finite number >= 0.001, <= 0.5"),
        ("abstain_target", "nan", "expected a finite number"),
        ("out_of_scope_label", " ", "expected a non-empty text"),
    ],
)
def test_bad_settings_are_clear_errors_and_change_nothing(
    store: Path, key: str, value: str, expected: str
) -> None:
    code, out = run(store, "config", key, value)
    assert code == 1 and out.startswith(f"Error: setting '{key}': {expected}")
    assert "Traceback" not in out
    with Workspace.open(store) as ws:
        assert ws.settings.describe(key).source == "default"


def test_eval_scores_out_of_scope_rows(store: Path, tmp_path: Path) -> None:
    rows = [
        (FAR[0], ""),
        (FAR[1], "out of scope"),
        ("What is the capital of Australia?", ""),
        ("How tall is Mount Everest?", "out of scope"),
        *NEAR,
        ("The app crashes when I open the settings page", "technical"),
        ("How do I change the email address on my account?", "account"),
        ("The website keeps showing an error when I open the cart", "technical"),
    ]
    path = tmp_path / "eval.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    assert run(store, "config", "abstain", "on")[0] == 0
    code, out = run(store, "eval", str(path), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    with Workspace.open(store) as ws:
        answers = ws.classify([text for text, _ in rows])
    oos = np.array([label in ("", "out of scope") for _, label in rows])
    refused = np.array([a.abstained for a in answers])
    scores = np.array([a.in_scope for a in answers], dtype=float)
    right = np.array([a.label == label for a, (_, label) in zip(answers, rows)])
    got = report["out_of_scope"]
    assert got["n"] == 4 and report["unknown_labels"] == {}
    assert got["recall"] == pytest.approx(refused[oos].mean())
    assert got["precision"] == pytest.approx((refused & oos).sum() / refused.sum())
    assert got["auroc"] == pytest.approx(roc_auc_score(~oos, scores))
    assert got["in_scope"]["n"] == 5  # not 4: a swap of the two sides would show
    assert got["in_scope"]["accuracy"] == pytest.approx(right[~oos].mean())
    assert got["in_scope"]["refused"] == pytest.approx(refused[~oos].mean())
    assert got["recall"] == 1.0 and got["in_scope"]["accuracy"] == 1.0  # the built-in outcome
    assert report["abstained"] == int(refused.sum())
    code, out = run(store, "eval", str(path), "--format", "table")
    assert code == 0 and "out of scope: 4 rows, recall=1.000" in out
    code, out = run(store, "eval", str(path), "--compare", "--format", "json")
    assert code == 0
    (compared,) = json.loads(out)  # retrieval only: no model, no LLM
    assert compared["out_of_scope"] == got
    code, out = run(store, "eval", str(path), "--compare", "--format", "table")
    assert code == 0 and "AUROC" in out and "OOS" in out


def test_auroc_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(1, 1, 40), 1)  # rounded: ties count a half
    neg = np.round(rng.normal(0, 1, 30), 1)
    truth = np.r_[np.ones(40), np.zeros(30)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(truth, np.r_[pos, neg]))
    assert auroc([], [1.0]) is None


def test_the_llm_is_offered_none_of_these_and_its_refusal_counts(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FEWSHOT_LLM_URL", "FEWSHOT_LLM_MODEL", "FEWSHOT_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with ChatServer() as server, Workspace.open(store) as ws:
        ws.config("llm_url", server.url)
        ws.config("llm_model", "test")
        server.script(Reply("shipping"))
        assert ws.classify([NEAR[0][0]])[0].label == "shipping"
        assert "none of these" not in server.chats[-1].messages[0]["content"]
        ws.config("abstain", "on")
        server.respond(
            lambda asked: Reply("shipping" if "Please help" in asked.query else "None of these.")
        )
        refused, answered = ws.classify([NEAR[0][0], NEAR[0][0] + " Please help."])
        assert "none of these" in server.chats[-1].messages[0]["content"]
        assert (refused.label, refused.abstained, refused.stage) == (None, True, "llm")
        assert refused.best_label == "shipping"
        assert (answered.label, answered.abstained, answered.stage) == ("shipping", False, "llm")
