"""The SetFit stage's rules: when to train, the gate, who answers, settings, pair sampling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fewshot.errors import ConfigError
from fewshot.metrics import pair_ranking
from fewshot.policy import Verdict, combine, promote, training_due
from fewshot.settings import parse as parse_setting
from fewshot.stages.finetune import SetFitConfig, sample_pairs
from fewshot.stages.setfit import Head
from fewshot.storage.registry import ModelVersion
from fewshot.tasks.gate import held_out_part
from fewshot.values import Prediction

SETTINGS = (8, 0.5)  # min_per_label, retrain_growth


def model_row(
    version: int, labels: list[str], n_examples: int, status: str = "serving"
) -> ModelVersion:
    return ModelVersion(version, "setfit", 0.0, status, n_examples, tuple(labels))


def test_no_training_until_two_labels_reach_the_threshold() -> None:
    assert training_due({"a": 8, "b": 7, "c": 1}, [], *SETTINGS) is None
    assert training_due({"a": 8, "b": 8, "c": 1}, [], *SETTINGS) == "2 labels reached 8 examples"


def test_a_new_label_at_the_threshold_retrains() -> None:
    models = [model_row(1, ["a", "b"], 16)]
    assert training_due({"a": 8, "b": 8, "c": 7}, models, *SETTINGS) is None
    assert training_due({"a": 8, "b": 8, "c": 8}, models, *SETTINGS) == (
        "label 'c' reached the threshold"
    )


def test_growth_by_the_fraction_retrains_and_a_rejected_model_counts_too() -> None:
    models = [model_row(1, ["a", "b"], 16, "rejected")]
    assert training_due({"a": 11, "b": 12}, models, *SETTINGS) is None  # 23 < 24
    reason = training_due({"a": 12, "b": 12}, models, *SETTINGS)
    assert reason == "the labeled set grew by 50% since version 1"
    assert training_due({"a": 12, "b": 12}, models, 8, 1.0) is None


def right(candidate: str, serving: str) -> tuple[list[bool], list[bool]]:
    """Per-text right/wrong of both sides, written as strings of 1s and 0s."""
    return [c == "1" for c in candidate], [s == "1" for s in serving]


def test_the_candidate_serves_unless_clearly_worse_on_the_texts_they_disagree_on() -> None:
    assert promote(*right("1110", "1100"), 0.0).promoted is True  # more accurate
    tie = promote(*right("1100", "1100"), 0.0)
    assert tie == Verdict(True, "same held-out accuracy: a tie goes to the fine-tuned model")
    # 1 against 2 discordant (p = 0.5), 3 against 0 (p = 0.125): a statistical tie promotes
    assert promote(*right("1001", "0111"), 0.0).promoted is True
    small = promote(*right("0001", "1111"), 0.0)
    assert (
        small.promoted is True and "statistical tie" in small.reason and "p = 0.125" in small.reason
    )
    # 4 against 0 (p = 0.0625), 6 against 1 (p = 0.0625): clearly worse, kept out
    four = promote(*right("0000", "1111"), 0.0)
    assert four.promoted is False and four.reason.startswith("clearly lower held-out accuracy")
    assert promote(*right("1000000", "0111111"), 0.0).promoted is False
    assert promote(*right("100000", "011111"), 0.0).promoted is True  # 1 against 5: p = 0.109


def test_a_margin_asks_for_more_accuracy_and_a_tie_never_wins() -> None:
    assert promote(*right("1111", "1100"), 0.25).promoted is True  # +0.5 > 0.25
    assert promote(*right("1110", "1100"), 0.25).promoted is False  # +0.25 is not more
    assert promote(*right("1100", "1100"), 0.05).promoted is False
    assert promote(*right("1100", "1100"), 0.05, ["login"]).promoted is False


def test_pair_ranking_is_the_roc_auc_of_each_querys_similarities() -> None:
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(30, 8))
    ref_labels = list(rng.choice(["a", "b", "c"], size=30))
    queries = rng.normal(size=(5, 8))
    query_labels = ["a", "b", "c", "a", "d"]  # no reference has "d"
    refs[:4] = refs[4]  # repeated references: tied similarities count a half
    got = pair_ranking(queries, query_labels, refs, ref_labels)
    sims = queries @ refs.T
    for i, label in enumerate(query_labels[:4]):
        expected = roc_auc_score([r == label for r in ref_labels], sims[i])
        assert got[i] == pytest.approx(expected)
    assert np.isnan(got[4])
    assert np.isnan(pair_ranking(queries[:1], ["a"], refs[:3], ["a"] * 3))[0]


def _prediction(label: str, confidence: float, stage: str) -> Prediction:
    return Prediction("t", label, confidence, stage, {label: confidence})


def test_retrieval_answers_a_label_the_model_never_saw_only_when_confident() -> None:
    model = _prediction("a", 0.6, "setfit")
    assert combine(model, _prediction("new", 0.7, "retrieval"), ["a", "b"], 0.5).label == "new"
    assert combine(model, _prediction("new", 0.4, "retrieval"), ["a", "b"], 0.5).label == "a"
    # a label the model knows is the model's call, however sure retrieval is
    assert combine(model, _prediction("b", 0.99, "retrieval"), ["a", "b"], 0.5).label == "a"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("min_per_label", "3", 3), ("gate_margin", "0.02", 0.02), ("train", "never", "never")],
)
def test_settings_are_parsed(key: str, value: str, expected: object) -> None:
    assert parse_setting(key, value) == expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("min_per_label", "0", "setting 'min_per_label': expected an integer >= 1, got '0'"),
        ("max_steps", "many", "setting 'max_steps': expected an integer >= 1, got 'many'"),
        ("train", "sometimes", "expected one of auto, never, background"),
        ("min_per_labels", "3", "unknown setting 'min_per_labels'"),
    ],
)
def test_bad_settings_say_what_was_expected(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_setting(key, value)


def test_pairs_are_sampled_linearly_seeded_and_labeled_correctly() -> None:
    labels = ["a"] * 5 + ["b"] * 3 + ["c"]
    first, second, target = sample_pairs(labels, 200, random_state=7)
    assert len(first) == 200
    same = np.asarray(labels)[first] == np.asarray(labels)[second]
    assert np.array_equal(same, target == 1.0)
    assert (first != second).all()  # a positive pair is two different examples
    assert target.mean() == pytest.approx(0.5)
    again = sample_pairs(labels, 200, random_state=7)
    assert all(np.array_equal(x, y) for x, y in zip((first, second, target), again))
    other = sample_pairs(labels, 200, random_state=8)
    assert not np.array_equal(first, other[0])


def test_step_cap_bounds_the_steps() -> None:
    config = SetFitConfig(max_steps=50, pairs_per_example=40, batch_size=16, loss="pairs")
    assert config.steps(4) == 10  # 160 pairs
    assert config.steps(1000) == 50


def test_the_held_out_part_is_stratified_and_takes_the_preferred_examples_first() -> None:
    labels = ["a"] * 9 + ["b"] * 7
    held = held_out_part(labels, 3, random_state=0, first=[False] * 16)
    names = np.asarray(labels)
    assert (held[names == "a"].sum(), held[names == "b"].sum()) == (3, 3)  # 9/3, 7/3 up
    other = held_out_part(labels, 3, random_state=1, first=[False] * 16)
    assert not np.array_equal(held, other)  # seeded, not the first examples of a label
    first = [i in (0, 1, 9) for i in range(16)]  # examples a serving model never saw
    held = held_out_part(labels, 3, random_state=0, first=first)
    assert held[[0, 1, 9]].all() and held.sum() == 6


def test_pairs_anchored_at_some_examples_start_from_them() -> None:
    labels = ["a"] * 5 + ["b"] * 3 + ["c"]
    first, second, target = sample_pairs(labels, 100, random_state=7, anchors=[0, 8])
    assert set(first.tolist()) == {0, 8}  # "c" (8) has no partner, so only negatives
    same = np.asarray(labels)[first] == np.asarray(labels)[second]
    assert np.array_equal(same, target == 1.0)
    assert target[first == 8].sum() == 0 and target[first == 0].sum() > 0


def test_the_head_matches_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    for labels in (["x", "y"] * 15, ["x", "y", "z"] * 10):
        head = Head.fit(x, labels, random_state=0)
        reference = LogisticRegression(max_iter=2000, random_state=0).fit(x, labels)
        assert head.classes == tuple(reference.classes_)
        np.testing.assert_allclose(head.predict_proba(x), reference.predict_proba(x), atol=1e-8)


def test_the_status_table_shows_the_figures_the_gate_compared() -> None:
    from fewshot.cli.render import gate_figures

    # a serving SetFit version is scored on the held-out texts it never saw: the candidate's
    # figure on those (accuracy_compared), not on all held-out texts, is what it is set against
    metrics = {
        "held_out_accuracy": 0.9,
        "accuracy_compared": 0.5,
        "baseline_accuracy": 0.75,
        "baseline": "setfit:v1",
        "compared_on": 4,
    }
    assert gate_figures(metrics) == "0.50 vs 0.75 setfit:v1, on 4"
    old = {"cv_accuracy_compared": 0.625, "baseline_accuracy": 0.5, "baseline": "retrieval"}
    assert gate_figures(old) == "0.62 vs 0.50 retrieval (cv)"
    assert gate_figures({}) == ""
