"""Labels before examples (issue 16): declared labels, their priors, the label commands.

Real encoder, real FAISS, real SQLite. The descriptions-only tests are built so a wrong
label fails them: swapping the two descriptions must swap the answers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fewshot.classifier import FewShotClassifier
from fewshot.cli import cli
from fewshot.errors import ConflictError, DataError
from fewshot.stages.priors import name_examples, prior_text
from fewshot.stages.retrieval import Vote, leave_one_out
from fewshot.storage.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION
from fewshot.workspace import Workspace

SPORTS = "football, matches, goals, players and teams"
COOKING = "recipes, baking, kitchen and food"
TEXTS = {
    "the striker scored twice in the final": "sports",
    "knead the dough and bake the bread for an hour": "cooking",
    "the goalkeeper saved a penalty in extra time": "sports",
    "simmer the onions in butter, then add the garlic": "cooking",
}


def run(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    return result.exit_code, result.output


def declared(store: Path, sports: str = SPORTS, cooking: str = COOKING) -> None:
    assert run(store, "label-add", "sports", "--description", sports)[0] == 0
    assert run(store, "label-add", "cooking", "--description", cooking)[0] == 0


def classify(store: Path, *texts: str) -> list[dict[str, object]]:
    code, out = run(store, "classify", "--format", "jsonl", "--explain", *texts)
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


def test_descriptions_alone_classify_clearly_worded_texts(store_dir: Path) -> None:
    declared(store_dir)
    records = classify(store_dir, *TEXTS)
    assert [r["label"] for r in records] == list(TEXTS.values())
    assert {r["stage"] for r in records} == {"retrieval"}
    # control: the descriptions decide; swapped, every answer swaps
    swapped = store_dir.parent / "swapped"
    assert run(swapped, "label-add", "sports", "--description", COOKING)[0] == 0
    assert run(swapped, "label-add", "cooking", "--description", SPORTS)[0] == 0
    flipped = {"sports": "cooking", "cooking": "sports"}
    assert [r["label"] for r in classify(swapped, *TEXTS)] == [flipped[v] for v in TEXTS.values()]


def test_explain_shows_the_prior_as_a_description_neighbour(store_dir: Path) -> None:
    declared(store_dir)
    assert run(store_dir, "add", "--label", "sports", "the referee showed a red card")[0] == 0
    (record,) = classify(store_dir, "the striker scored twice in the final")
    near = record["neighbors"]
    priors = [n for n in near if n.get("kind") == "description"]  # type: ignore[union-attr]
    assert {n["text"] for n in priors} == {f"sports: {SPORTS}", f"cooking: {COOKING}"}
    examples = [n for n in near if "kind" not in n]  # type: ignore[union-attr]
    assert [n["text"] for n in examples] == ["the referee showed a red card"]


def test_a_prior_is_one_more_member_of_its_prototype(workspace: Workspace) -> None:
    workspace.config("train", "never")
    workspace.add_label("sports", SPORTS)
    workspace.add(["the referee showed a red card", "a late goal won the cup"], "sports")
    workspace.add(["bake the cake for forty minutes"], "cooking")
    memory = workspace.memory()
    encoder = workspace.encoder
    vectors = encoder.encode(["the referee showed a red card", "a late goal won the cup"])
    mean = (vectors.sum(axis=0) + encoder.encode([prior_text("sports", SPORTS)])[0]) / 3
    want = mean / np.linalg.norm(mean)
    got = memory.prototypes[memory.classes.index("sports")]
    assert np.allclose(got, want, atol=1e-5)
    cooking = encoder.encode(["bake the cake for forty minutes"])[0]  # no prior: its example
    assert np.allclose(memory.prototypes[memory.classes.index("cooking")], cooking, atol=1e-5)


def test_the_prior_is_never_counted_as_an_example(workspace: Workspace) -> None:
    workspace.config("train", "never")
    workspace.add_label("sports", SPORTS)
    workspace.add_label("cooking", COOKING)
    workspace.add(["bake the cake for forty minutes", "whisk the eggs with sugar"], "cooking")
    status = workspace.status()
    assert status["examples"] == 2 and status["labels"] == {"cooking": 2, "sports": 0}
    assert workspace.training_due() is None
    assert [(i.name, i.examples) for i in workspace.labels()] == [("cooking", 2), ("sports", 0)]
    _, truth = leave_one_out(workspace.memory(), Vote())
    assert len(truth) == 2  # the two examples are scored; the priors never are


def test_export_then_import_keeps_labels_and_descriptions(store_dir: Path, tmp_path: Path) -> None:
    declared(store_dir)
    assert run(store_dir, "label-add", "spam")[0] == 0  # no description
    assert run(store_dir, "add", "--label", "cooking", "whisk the eggs, then fold")[0] == 0
    for fmt in ("jsonl", "csv"):
        code, out = run(store_dir, "export", "--format", fmt)
        assert code == 0, out
        file = tmp_path / f"labels.{fmt}"
        file.write_text(out, encoding="utf-8")
        copy = tmp_path / f"copy-{fmt}"
        code, out = run(copy, "import", str(file))
        assert code == 0, out
        code, listing = run(copy, "labels", "--format", "json")
        assert json.loads(listing) == json.loads(run(store_dir, "labels", "--format", "json")[1])
        assert [r["label"] for r in classify(copy, *TEXTS)] == list(TEXTS.values())
    rows = [json.loads(line) for line in run(store_dir, "export")[1].splitlines()]
    assert {"kind": "label", "label": "spam", "description": None} in rows
    assert [r for r in rows if "kind" not in r] == [
        {"text": "whisk the eggs, then fold", "label": "cooking", "source": "add"}
    ]


def test_a_file_of_label_rows_only_declares_labels(store_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "labels.jsonl"
    rows = [
        {"kind": "label", "label": "sports", "description": SPORTS},
        {"kind": "label", "label": "cooking", "description": COOKING},
    ]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with Workspace.create(store_dir) as ws:
        ws.import_file(file)
        assert ws.examples() == []
        assert [(i.name, i.description) for i in ws.labels()] == [
            ("cooking", COOKING),
            ("sports", SPORTS),
        ]
        assert ws.classify(["the striker scored twice in the final"])[0].label == "sports"


def test_label_remove_refuses_while_examples_carry_the_label(store_dir: Path) -> None:
    declared(store_dir)
    assert run(store_dir, "add", "--label", "sports", "a late goal won the cup")[0] == 0
    code, out = run(store_dir, "label-remove", "sports")
    assert code == 1 and "Error: label-remove: 1 examples still carry label 'sports'" in out
    assert "--keep-examples" in out and "Traceback" not in out
    assert json.loads(run(store_dir, "labels", "--format", "json")[1])[1]["declared"] is True
    code, out = run(store_dir, "label-remove", "sports", "--keep-examples")
    assert code == 0, out
    listing = json.loads(run(store_dir, "labels", "--format", "json")[1])
    assert listing[1] == {"name": "sports", "description": None, "examples": 1, "declared": False}
    assert run(store_dir, "label-remove", "cooking")[0] == 0  # no example: removed
    assert [r["name"] for r in json.loads(run(store_dir, "labels", "--format", "json")[1])] == [
        "sports"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("label-add", "  "), "Error: label-add: the label is empty or only whitespace"),
        (("label-add", "sports"), "Error: label 'sports' is declared already"),
        (("label-remove", "nope"), "Error: label-remove: no label 'nope' in the workspace"),
        (("label-edit", "nope", "--description", "x"), "Error: label-edit: no label 'nope'"),
        (("label-add", "x", "--description", "a\udc80"), "not valid Unicode"),
    ],
)
def test_bad_label_commands_fail_cleanly_and_change_nothing(
    store_dir: Path, args: tuple[str, ...], message: str
) -> None:
    declared(store_dir)
    before = run(store_dir, "labels", "--format", "json")[1]
    code, out = run(store_dir, *args)
    assert code == 1 and message in out and "Traceback" not in out
    assert run(store_dir, "labels", "--format", "json")[1] == before


def test_label_edit_changes_the_prior(workspace: Workspace) -> None:
    workspace.add_label("a", "football, matches and goals")
    workspace.add_label("b", "recipes, baking and food")
    text = "the striker scored twice in the final"
    assert workspace.classify([text])[0].label == "a"
    workspace.edit_label("a", "recipes, baking and food")
    workspace.edit_label("b", "football, matches and goals")
    assert workspace.classify([text])[0].label == "b"  # re-encoded: the edit took effect
    with pytest.raises(ConflictError, match="declared already"):
        workspace.add_label("a")
    with pytest.raises(DataError, match="no label 'c'"):
        workspace.remove_label("c")


def test_a_schema_2_workspace_migrates_and_keeps_every_example(tmp_path: Path) -> None:
    store = tmp_path / "old"
    with Workspace.create(store) as ws:
        ws.config("train", "never")
        ws.add(["bake the cake for forty minutes", "whisk the eggs with sugar"], "cooking")
        ws.add(["a late goal won the cup"], "sports")
        want = [(e.text, e.label, e.source) for e in ws.examples()]
    with sqlite3.connect(store / DB_NAME) as conn:  # back to schema 2: no label tables
        conn.executescript("DROP TABLE prior_embeddings; DROP TABLE labels; PRAGMA user_version=2;")
    assert SCHEMA_VERSION == len(MIGRATIONS) == 3
    with Workspace.open(store) as ws:
        assert [(e.text, e.label, e.source) for e in ws.examples()] == want
        ws.add_label("sports", SPORTS)
        assert [(i.name, i.examples, i.declared) for i in ws.labels()] == [
            ("cooking", 2, False),
            ("sports", 1, True),
        ]
    with sqlite3.connect(store / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3


def test_the_classifier_takes_label_descriptions() -> None:
    clf = FewShotClassifier(label_descriptions={"sports": SPORTS, "cooking": COOKING})
    clf.fit([], [])
    assert list(clf.classes_) == ["cooking", "sports"]
    assert list(clf.predict(list(TEXTS))) == list(TEXTS.values())
    swapped = FewShotClassifier(label_descriptions={"sports": COOKING, "cooking": SPORTS})
    flipped = {"sports": "cooking", "cooking": "sports"}
    assert list(swapped.fit([], []).predict(list(TEXTS))) == [flipped[v] for v in TEXTS.values()]
    with pytest.raises(DataError, match="at least one labeled example"):
        FewShotClassifier().fit([], [])


def test_label_names_become_training_texts_unless_they_say_nothing() -> None:
    labels = ["card_arrival", "label_3", "7", "cat", "sports", "LABEL_0"]
    described = {"sports": SPORTS, "7": "refunds and chargebacks"}
    assert name_examples(labels, described) == [
        ("card arrival", "card_arrival"),
        ("7: refunds and chargebacks", "7"),  # a code, but its description says something
        ("cat", "cat"),  # a word, not a code
        (prior_text("sports", SPORTS), "sports"),
    ]
