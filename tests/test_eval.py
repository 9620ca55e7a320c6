"""`fewshot eval`: metrics against scikit-learn, unknown labels, JSON fields, CLI behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from fewshot.cli import cli
from fewshot.errors import DataError
from fewshot.metrics import evaluate_labels
from fewshot.workspace import Workspace

# Held-out tickets (none is in examples/tickets.csv), some deliberately ambiguous so the
# workspace gets a few wrong, plus one label the workspace has never seen.
EVAL_ROWS = [
    ("My order still hasn't been delivered, where is it?", "shipping"),
    ("I was billed two times for the same purchase", "refund"),
    ("I forgot my password and can't sign in", "account"),
    ("The checkout page freezes when I press pay", "technical"),
    ("Do you deliver on weekends?", "shipping"),
    ("Return the money, the parcel never came", "shipping"),
    ("I was charged but the app crashed before the receipt", "refund"),
    ("Can I change my username?", "account"),
    ("The refund page gives me an error", "technical"),
    ("Where can I see my invoices?", "account"),
    ("Do you sell gift cards?", "sales"),
    ("Is there a discount for bulk orders?", "sales"),
]


# Rows whose answers are known: the first 8 are near-copies of examples/tickets.csv rows under
# their own label (retrieval is certainly right), the next 2 are near-copies given another
# label on purpose (certain errors), the last 2 carry a label the workspace has never seen.
KNOWN_ROWS = [
    ("I want my money back for this order, please", "refund"),
    ("Please refund the charge on my card, the item arrived broken", "refund"),
    ("Where is my parcel? It was due on Monday already", "shipping"),
    ("My package has still not arrived yet", "shipping"),
    ("I can't log in to my account anymore", "account"),
    ("How do I reset my password, please?", "account"),
    ("The app crashes every single time I open the cart", "technical"),
    ("Your website shows an error 500 at the checkout", "technical"),
    ("How long does express delivery take to arrive?", "refund"),  # answered shipping
    ("I get a blank screen after I updated the app", "account"),  # answered technical
    ("Can you ship my order to Canada?", "sales"),  # answered shipping
    ("How do I return this item and get a refund?", "sales"),  # answered refund
]
# What follows from that construction, worked out by hand (rows true, columns predicted).
KNOWN_LABELS = ["account", "refund", "sales", "shipping", "technical"]
KNOWN_CONFUSION = [
    [2, 0, 0, 0, 1],  # account: 2 right, the blank screen answered technical
    [0, 2, 0, 1, 0],  # refund: 2 right, express delivery answered shipping
    [0, 1, 0, 1, 0],  # sales: never right, one each to refund and shipping
    [0, 0, 0, 2, 0],  # shipping
    [0, 0, 0, 0, 2],  # technical
]
KNOWN_SUPPORT = {"account": 3, "refund": 3, "sales": 2, "shipping": 2, "technical": 2}
KNOWN_PRECISION_RECALL = {
    "account": (1.0, 2 / 3),
    "refund": (2 / 3, 2 / 3),
    "sales": (0.0, 0.0),
    "shipping": (2 / 4, 1.0),
    "technical": (2 / 3, 1.0),
}
KNOWN_ACCURACY = 8 / 12
KNOWN_MACRO_F1 = (4 / 5 + 2 / 3 + 0 + 2 / 3 + 4 / 5) / 5  # = 44 / 75


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["text,label"] + [f'"{text}",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "eval.csv", EVAL_ROWS)


@pytest.fixture
def known_eval_file(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "known.csv", KNOWN_ROWS)


def _sklearn(truth: list[str], predicted: list[str]) -> dict[str, object]:
    present = sorted(set(truth))
    union = sorted(set(truth) | set(predicted))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=present, zero_division=0)
    return {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, labels=present, average="macro", zero_division=0),
        "mcc": matthews_corrcoef(truth, predicted),
        "per_label": {label: (p[i], r[i], f[i], int(s[i])) for i, label in enumerate(present)},
        "confusion": confusion_matrix(truth, predicted, labels=union).tolist(),
        "labels": union,
    }


def _assert_agrees(report: dict[str, object], truth: list[str], predicted: list[str]) -> None:
    expected = _sklearn(truth, predicted)
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert report["mcc"] == pytest.approx(expected["mcc"])
    assert report["confusion"] == {"labels": expected["labels"], "matrix": expected["confusion"]}
    per_label = report["per_label"]
    assert isinstance(per_label, dict)
    assert sorted(per_label) == sorted(expected["per_label"])  # type: ignore[arg-type]
    for label, (p, r, f, s) in expected["per_label"].items():  # type: ignore[attr-defined]
        got = per_label[label]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
        assert got["support"] == s


def test_metrics_match_sklearn_on_seeded_predictions() -> None:
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    truth = [str(x) for x in rng.choice(classes[:3], size=200)]
    # mostly right, sometimes another class, sometimes "d", a label absent from the truth
    predicted = [t if rng.random() < 0.6 else str(rng.choice(classes)) for t in truth]
    report = evaluate_labels(truth, predicted).to_dict()
    _assert_agrees(report, truth, predicted)
    assert "d" in report["confusion"]["labels"]
    assert "d" not in report["per_label"]  # macro-F1 averages over the file's labels only
    assert report["n"] == 200


def test_metrics_fail_for_wrong_predictions() -> None:
    truth = ["x", "x", "y", "y"]
    right = evaluate_labels(truth, truth)
    wrong = evaluate_labels(truth, ["x", "y", "x", "y"])
    assert (right.accuracy, right.macro_f1, right.mcc) == (1.0, 1.0, 1.0)
    assert (wrong.accuracy, wrong.macro_f1, wrong.mcc) == (0.5, 0.5, 0.0)
    assert evaluate_labels(["x", "y"], ["y", "x"]).mcc == pytest.approx(-1.0)


def test_metrics_reject_mismatched_lengths() -> None:
    with pytest.raises(DataError, match="2 true labels but 1 predictions"):
        evaluate_labels(["a", "b"], ["a"])


def test_eval_agrees_with_sklearn_on_the_workspaces_own_predictions(
    tickets_workspace: Workspace, eval_file: Path
) -> None:
    report = tickets_workspace.evaluate(eval_file).to_dict()
    texts = [text for text, _ in EVAL_ROWS]
    truth = [label for _, label in EVAL_ROWS]
    predicted = [p.label for p in tickets_workspace.classify(texts)]
    _assert_agrees(report, truth, predicted)
    assert report["n"] == len(EVAL_ROWS)
    # the unknown label is reported and counted: its rows are errors with recall 0
    assert report["unknown_labels"] == {"sales": 2}
    assert report["per_label"]["sales"]["recall"] == 0.0
    known = [(t, p) for t, p in zip(truth, predicted) if t != "sales"]
    assert report["known"] == {
        "n": 10,
        "accuracy": pytest.approx(sum(t == p for t, p in known) / 10),
    }
    assert report["stages"] == {"retrieval": len(EVAL_ROWS)}
    assert report["texts_per_second"] > 0
    # the clear cases are right, so the metric is not vacuous
    assert predicted[:5] == truth[:5]
    assert report["accuracy"] < 1.0


def test_eval_json_fields_from_the_cli(
    tickets_workspace: Workspace, known_eval_file: Path, tmp_path: Path
) -> None:
    args = ["--store", str(tickets_workspace.path), "eval", str(known_eval_file)]
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = {"n", "accuracy", "macro_f1", "mcc", "per_label", "confusion", "stages"}
    assert expected | {"unknown_labels", "known", "texts_per_second"} <= set(report)
    assert report["n"] == len(KNOWN_ROWS)
    assert set(report["per_label"]["refund"]) == {"precision", "recall", "f1", "support"}
    assert 0.0 <= report["accuracy"] <= 1.0
    # the figures of the known confusion, stated above from how the file was built
    assert report["accuracy"] == pytest.approx(KNOWN_ACCURACY)
    assert report["confusion"] == {"labels": KNOWN_LABELS, "matrix": KNOWN_CONFUSION}
    assert {k: v["support"] for k, v in report["per_label"].items()} == KNOWN_SUPPORT
    for label, (precision, recall) in KNOWN_PRECISION_RECALL.items():
        got = report["per_label"][label]
        assert (got["precision"], got["recall"]) == pytest.approx((precision, recall)), label
    assert report["macro_f1"] == pytest.approx(KNOWN_MACRO_F1)
    assert report["unknown_labels"] == {"sales": 2}
    assert report["known"] == {"n": 10, "accuracy": pytest.approx(8 / 10)}
    assert report["stages"] == {"retrieval": len(KNOWN_ROWS)}


def _table_body(output: str, title: str) -> dict[str, list[str]]:
    """The rows of the rich table printed under ``title``: {first cell: the other cells}."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            first, *rest = (cell.strip() for cell in line.strip("│").split("│"))
            rows[first] = rest
    return rows


def test_eval_table_and_png(
    tickets_workspace: Workspace, known_eval_file: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "confusion.png"
    args = ["--store", str(tickets_workspace.path), "eval", str(known_eval_file)]
    result = CliRunner().invoke(cli, [*args, "--plot", str(picture)])
    assert result.exit_code == 0, result.output
    assert "accuracy=" in result.output
    assert "sales (2)" in result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the printed figures are those of the known confusion (8 of 12 right, 8 of the 10 known)
    words = " ".join(result.output.split())  # the summary lines wrap with the terminal
    assert f"n=12 accuracy={KNOWN_ACCURACY:.3f} macro-F1={KNOWN_MACRO_F1:.3f}" in words
    assert "accuracy on the 10 rows with known labels: 0.800" in words
    confusion = _table_body(result.output, "confusion (row = true, column = predicted)")
    assert {label: [int(x) for x in row] for label, row in confusion.items()} == dict(
        zip(KNOWN_LABELS, KNOWN_CONFUSION)
    )
    per_label = _table_body(result.output, "per label")
    support = {label.removesuffix(" (unknown)"): int(row[-1]) for label, row in per_label.items()}
    assert support == KNOWN_SUPPORT
    assert per_label["sales (unknown)"][:2] == ["0.000", "0.000"]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.csv", "no such file"),
        ('{"text": "a", "label": "refund"}\n{"text": broken\n', "bad.jsonl", "line 2"),
        ("text,category\nhello,refund\n", "nolabel.csv", "no 'label' column"),
    ],
)
def test_eval_bad_file_is_an_error_and_changes_nothing(
    tickets_workspace: Workspace, tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    before = tickets_workspace.export_rows()
    result = CliRunner().invoke(cli, ["--store", str(tickets_workspace.path), "eval", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
    assert tickets_workspace.export_rows() == before


def test_eval_plot_into_a_missing_folder_is_an_error(
    tickets_workspace: Workspace, eval_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "nowhere" / "cm.png"
    result = CliRunner().invoke(
        cli, ["--store", str(tickets_workspace.path), "eval", str(eval_file), "--plot", str(target)]
    )
    assert result.exit_code == 1
    assert "Error: " in result.output
    assert "does not exist" in result.output
    assert not target.exists()


def test_eval_usage_errors_exit_2(tickets_workspace: Workspace, eval_file: Path) -> None:
    store = str(tickets_workspace.path)
    assert CliRunner().invoke(cli, ["--store", store, "eval"]).exit_code == 2
    bad_format = ["--store", store, "eval", str(eval_file), "--format", "xml"]
    assert CliRunner().invoke(cli, bad_format).exit_code == 2


def test_eval_without_a_workspace_is_an_error(tmp_path: Path, eval_file: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "none"), "eval", str(eval_file)])
    assert result.exit_code == 1
    assert "no workspace here" in result.output
