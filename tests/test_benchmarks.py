"""A smoke run of benchmarks/accuracy.py on a 2-label slice of a shared dataset."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import ROOT, read_dataset

RECORD_FIELDS = {
    "dataset",
    "n_per_label",
    "seed",
    "method",
    "accuracy",
    "macro_f1",
    "mcc",
    "train_seconds",
    "texts_per_second",
}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("accuracy")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """emotion restricted to joy and sadness: 30 train and 20 test rows per label."""
    keep = {"joy", "sadness"}
    folder = tmp_path / "data" / "emotion2"
    folder.mkdir(parents=True)
    for split, size in (("train", 30), ("test", 20)):
        rows = read_dataset("emotion", split)
        picked = [
            r for label in sorted(keep) for r in [x for x in rows if x["label"] == label][:size]
        ]
        lines = "".join(json.dumps(r) + "\n" for r in picked)
        (folder / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path / "data"


def test_support_sets_are_seeded_balanced_and_nested(bench: ModuleType) -> None:
    common = importlib.import_module("common")
    texts = [f"t{i}" for i in range(60)]
    labels = ["a" if i % 3 else "b" for i in range(60)]
    small = common.sample_support(texts, labels, 4, seed=1)
    assert small == common.sample_support(texts, labels, 4, seed=1)
    assert small != common.sample_support(texts, labels, 4, seed=2)
    assert sorted(small[1]) == ["a"] * 4 + ["b"] * 4
    assert all(labels[texts.index(t)] == lab for t, lab in zip(*small))
    assert set(small[0]) <= set(common.sample_support(texts, labels, 16, seed=1)[0])


def test_wknn_adds_cosines_of_the_k_nearest(bench: ModuleType) -> None:
    support = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    labels = ["x", "y", "y", "x"]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    # k=1: the nearest is "x"; k=3: x gets 1.0, y gets 0.8 + 0.6 = 1.4
    assert bench.wknn_predict(support, labels, query, k=1) == ["x"]
    assert bench.wknn_predict(support, labels, query, k=3) == ["y"]


def _args(data_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--data-dir", str(data_dir), "--datasets", "emotion2", "--n", "4", "--seeds", "0",
        "--methods", "knn,wknn,logreg", "--out", str(tmp_path / "out.json"),
        "--cache-dir", str(tmp_path / "cache"), "--quiet", *extra,
    ]  # fmt: skip


def test_accuracy_smoke_run_writes_records_and_resumes(
    bench: ModuleType, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps([{"dataset": "other", "n_per_label": 8, "seed": 0, "method": "x"}]))
    records, computed = bench.run(bench.parse(_args(data_dir, tmp_path)))
    assert computed == 3
    assert [r["method"] for r in records] == ["knn", "wknn", "logreg"]
    for record in records:
        assert set(record) >= RECORD_FIELDS
        assert (record["dataset"], record["n_per_label"], record["seed"]) == ("emotion2", 4, 0)
        assert record["n_train"] == 8
        assert record["n_test"] == 40
        assert 0.0 <= record["accuracy"] <= 1.0
        assert -1.0 <= record["mcc"] <= 1.0
        assert record["train_seconds"] >= 0
        assert record["texts_per_second"] > 0
    # an interrupted run resumes: every cell comes back from the cache, unchanged
    again, computed_again = bench.run(bench.parse(_args(data_dir, tmp_path)))
    assert computed_again == 0
    assert again == records
    # --no-cache recomputes, and the same support set gives the same accuracy
    fresh, computed_fresh = bench.run(bench.parse(_args(data_dir, tmp_path, "--no-cache")))
    assert computed_fresh == 3
    assert [r["accuracy"] for r in fresh] == [r["accuracy"] for r in records]
    # main merges into --out: the record of another cell already there is kept
    bench.main(_args(data_dir, tmp_path))
    written = json.loads(out.read_text())
    assert {r["dataset"] for r in written} == {"emotion2", "other"}
    assert len(written) == 4


# Two far-apart topics, 4 texts each: with N = 4 the support set is the whole train split.
KNOWN_TRAIN = [
    ("My dog loves to chase the ball in the park", "pets"),
    ("The cat sleeps on the sofa all afternoon", "pets"),
    ("Our puppy chews every shoe in the house", "pets"),
    ("I feed my kitten twice a day", "pets"),
    ("Heavy rain is expected all day tomorrow", "weather"),
    ("The forecast says snow and strong wind tonight", "weather"),
    ("It is sunny and hot, thirty degrees this afternoon", "weather"),
    ("A thunderstorm with hail is coming this evening", "weather"),
]
# Every test text is a copy of a support text: the 8 under their own label are certainly right;
# the last 2 carry a label no support text has, so they are certainly wrong. Accuracy: 8 / 10.
KNOWN_TEST = [
    *KNOWN_TRAIN,
    ("My dog loves to chase the ball in the park", "other"),
    ("Heavy rain is expected all day tomorrow", "other"),
]


def test_accuracy_run_scores_a_data_set_of_known_outcome(bench: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "copies"
    folder.mkdir(parents=True)
    for split, rows in (("train", KNOWN_TRAIN), ("test", KNOWN_TEST)):
        lines = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
        (folder / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    args = _args(tmp_path / "data", tmp_path, "--no-cache")
    args[args.index("emotion2")] = "copies"
    records, computed = bench.run(bench.parse(args))
    assert computed == 3
    assert [r["method"] for r in records] == ["knn", "wknn", "logreg"]
    for record in records:
        assert (record["n_train"], record["n_test"]) == (8, 10)
        assert record["accuracy"] == pytest.approx(8 / 10), record["method"]


def test_unknown_method_is_a_usage_error(bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.parse(["--methods", "knn,magic"])
    assert exit_info.value.code == 2
