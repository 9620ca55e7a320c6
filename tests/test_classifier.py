"""FewShotClassifier: the scikit-learn shape, and right answers on separable data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, cross_val_score

from fewshot import FewShotClassifier
from fewshot.errors import ConfigError, DataError
from fewshot.onnx_encoder import _load_once

TICKETS = Path(__file__).resolve().parents[1] / "examples" / "tickets.csv"

# Given in an order that is not sorted, so classes_ order is the classifier's doing.
TRAIN = [
    ("The striker scored twice in the second half", "sports"),
    ("What a delicious pasta with garlic and basil", "food"),
    ("Stocks fell as the central bank raised interest rates", "finance"),
    ("The goalkeeper saved a penalty in extra time", "sports"),
    ("Bake the bread for forty minutes until golden", "food"),
    ("The company's quarterly profit beat analyst forecasts", "finance"),
]
TEST = {
    "The tennis champion won the final in straight sets": "sports",
    "Add the chopped onions and simmer the soup slowly": "food",
    "Bond yields rose after the inflation report": "finance",
    "The team signed a new midfielder before the match": "sports",
}


@pytest.fixture(scope="module")
def fitted() -> FewShotClassifier:
    texts, labels = zip(*TRAIN)
    clf = FewShotClassifier(k=3)
    assert clf.fit(list(texts), list(labels)) is clf
    return clf


def test_classes_are_sorted(fitted: FewShotClassifier) -> None:
    assert fitted.classes_.tolist() == ["finance", "food", "sports"]


def test_separable_texts_get_the_right_label(fitted: FewShotClassifier) -> None:
    assert fitted.predict(list(TEST)).tolist() == list(TEST.values())


def test_predict_proba_follows_classes_and_agrees_with_predict(fitted: FewShotClassifier) -> None:
    texts = [*TEST, "Hello there", "Stocks fell as the central bank raised interest rates"]
    proba = fitted.predict_proba(texts)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.all((proba >= 0) & (proba <= 1))
    assert fitted.predict(texts).tolist() == fitted.classes_[proba.argmax(axis=1)].tolist()
    # the column of each text's true label is its largest: columns really follow classes_
    columns = [fitted.classes_.tolist().index(label) for label in TEST.values()]
    assert proba[: len(TEST)].argmax(axis=1).tolist() == columns


def test_a_training_text_is_its_own_label(fitted: FewShotClassifier) -> None:
    texts = [t for t, _ in TRAIN]
    assert fitted.predict(texts).tolist() == [label for _, label in TRAIN]


def test_integer_labels_come_back_as_the_same_integers() -> None:
    codes = {"finance": 0, "food": 1, "sports": 2}
    clf = FewShotClassifier(k=3).fit([t for t, _ in TRAIN], [codes[lab] for _, lab in TRAIN])
    assert clf.classes_.tolist() == [0, 1, 2]
    assert clf.predict(list(TEST)).tolist() == [codes[lab] for lab in TEST.values()]


def test_control_swapped_labels_give_swapped_answers() -> None:
    swap = {"sports": "food", "food": "sports", "finance": "finance"}
    clf = FewShotClassifier(k=3).fit([t for t, _ in TRAIN], [swap[lab] for _, lab in TRAIN])
    assert clf.predict(list(TEST)).tolist() == [swap[lab] for lab in TEST.values()]


def test_get_params_returns_the_constructor_arguments() -> None:
    clf = FewShotClassifier(k=4, mix=0.5, batch_size=8)
    params = clf.get_params()
    assert (params["k"], params["mix"], params["batch_size"]) == (4, 0.5, 8)
    assert FewShotClassifier(**params).get_params() == params


def test_bad_fits_and_an_unfitted_classifier() -> None:
    with pytest.raises(ConfigError, match="not fitted yet"):
        FewShotClassifier().predict(["hello"])
    with pytest.raises(ConfigError, match="not fitted yet"):
        FewShotClassifier().predict_proba(["hello"])
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        FewShotClassifier().fit(["a", "b"], ["x"])
    with pytest.raises(DataError, match="at least one labeled example"):
        FewShotClassifier().fit([], [])
    with pytest.raises(ConfigError, match="k must be at least 1"):
        FewShotClassifier(k=0).fit(["a"], ["x"])
    with pytest.raises(DataError, match="label 2: the label is empty"):
        FewShotClassifier().fit(["a", "b"], ["x", " "])


# ---- scikit-learn integration, on examples/tickets.csv (4 labels x 6 support tickets) ----

# Near-copies of training tickets (a word added or changed): each must get its ticket's label.
NEAR_COPIES = [
    ("I want my money back for this order, please", "refund"),
    ("Can I cancel and get a full refund now?", "refund"),
    ("Where is my parcel? It was due on Monday morning", "shipping"),
    ("My package has still not arrived yet", "shipping"),
    ("I can't log in to my account anymore", "account"),
    ("How do I reset my password, please?", "account"),
    ("The app crashes every single time I open the cart", "technical"),
    ("Your website shows an error 500 at the checkout", "technical"),
]
CODES = {"account": 0, "refund": 1, "shipping": 2, "technical": 3}


@pytest.fixture(scope="module")
def tickets() -> tuple[list[str], list[str]]:
    with TICKETS.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture(scope="module")
def tickets_clf(tickets: tuple[list[str], list[str]]) -> FewShotClassifier:
    return FewShotClassifier(k=3).fit(*tickets)


def test_it_is_a_scikit_learn_classifier_on_text_input() -> None:
    clf = FewShotClassifier()
    assert is_classifier(clf)
    tags = clf.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert clf._more_tags() == {"X_types": ["string"]}
    assert repr(FewShotClassifier(k=3)) == "FewShotClassifier(k=3)"


def test_clone_gives_an_unfitted_estimator_with_equal_params(
    tickets_clf: FewShotClassifier,
) -> None:
    copy = clone(tickets_clf)
    assert copy is not tickets_clf
    assert copy.get_params() == tickets_clf.get_params()
    assert copy.get_params()["k"] == 3
    assert not hasattr(copy, "classes_") and not hasattr(copy, "memory_")
    with pytest.raises(ConfigError, match="not fitted yet"):
        copy.predict(["hello"])


def test_clone_and_fit_reuse_the_loaded_encoder(
    tickets_clf: FewShotClassifier, tickets: tuple[list[str], list[str]]
) -> None:
    before = _load_once.cache_info()  # the fast path's encoders, loaded once per process
    assert before.currsize >= 1  # tickets_clf loaded it
    copy = clone(tickets_clf).fit(*tickets)
    after = _load_once.cache_info()
    assert after.misses == before.misses  # no second load of the model
    assert after.hits > before.hits
    assert copy.encoder_.fast is tickets_clf.encoder_.fast is not None
    assert copy.predict(tickets[0]).tolist() == tickets_clf.predict(tickets[0]).tolist()


def test_set_params_changes_k_and_fit_uses_it(tickets: tuple[list[str], list[str]]) -> None:
    texts, labels = tickets
    clf = FewShotClassifier(mix=1.0)  # the neighbour vote alone: only k examples score
    assert clf.set_params(k=3) is clf
    assert clf.get_params()["k"] == 3
    voted = (clf.fit(texts, labels).predict_proba(texts) > 0).sum(axis=1)
    assert voted.max() == 3  # at most 3 neighbours voted, and somewhere 3 labels did
    # control: with k=10 some text gets votes from all 4 labels
    wide = (clf.set_params(k=10).fit(texts, labels).predict_proba(texts) > 0).sum(axis=1)
    assert wide.max() == 4
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(kk=3)
    with pytest.raises(ConfigError, match="k must be at least 1"):
        clf.set_params(k=0).fit(texts, labels)


def test_score_is_the_accuracy(tickets_clf: FewShotClassifier) -> None:
    texts = [t for t, _ in NEAR_COPIES]
    right = [lab for _, lab in NEAR_COPIES]
    assert tickets_clf.score(texts, right) == 1.0
    assert tickets_clf.score(texts, right) == accuracy_score(right, tickets_clf.predict(texts))
    planted = list(right)
    planted[4] = "refund"  # one wrong answer key out of 8
    assert tickets_clf.score(texts, planted) == 7 / 8
    assert tickets_clf.score(texts, planted) == accuracy_score(planted, tickets_clf.predict(texts))


def test_score_with_integer_labels_and_numpy_input(tickets: tuple[list[str], list[str]]) -> None:
    texts, labels = tickets
    codes = np.array([CODES[lab] for lab in labels])  # np.int64 labels
    clf = FewShotClassifier(k=3).fit(np.array(texts), codes)
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    near = np.array([t for t, _ in NEAR_COPIES])
    assert clf.score(near, [CODES[lab] for _, lab in NEAR_COPIES]) == 1.0
    assert [type(x) for x in clf.predict(near).tolist()] == [int] * len(NEAR_COPIES)


def test_cross_val_score(tickets: tuple[list[str], list[str]]) -> None:
    texts, labels = tickets
    scores = cross_val_score(FewShotClassifier(), texts, labels, cv=3, error_score="raise")
    assert len(scores) == 3
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.mean() >= 0.7  # chance is 0.25
    # the same folds on NumPy arrays of strings and integer labels give the same scores
    codes = np.array([CODES[lab] for lab in labels])
    again = cross_val_score(FewShotClassifier(), np.array(texts), codes, cv=3, error_score="raise")
    np.testing.assert_allclose(again, scores)


def test_grid_search(tickets: tuple[list[str], list[str]]) -> None:
    texts, labels = tickets
    search = GridSearchCV(FewShotClassifier(), {"k": [3, 10]}, cv=3, error_score="raise")
    assert search.fit(texts, labels) is search
    assert search.best_params_["k"] in {3, 10}
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert best.get_params()["k"] == search.best_params_["k"]
    near = [t for t, _ in NEAR_COPIES]
    assert best.predict(near).tolist() == [lab for _, lab in NEAR_COPIES]


def test_classes_are_sorted_by_value_and_proba_columns_follow() -> None:
    # as strings "10" < "100" < "2"; scikit-learn sorts classes_ by value
    codes = {"sports": 2, "food": 10, "finance": 100}
    clf = FewShotClassifier(k=3).fit([t for t, _ in TRAIN], [codes[lab] for _, lab in TRAIN])
    assert clf.classes_.tolist() == [2, 10, 100]
    proba = clf.predict_proba(list(TEST))
    truth = [codes[lab] for lab in TEST.values()]
    assert clf.classes_[proba.argmax(axis=1)].tolist() == truth
    assert clf.predict(list(TEST)).tolist() == truth


def test_texts_must_be_a_one_dimensional_sequence_of_strings(
    tickets_clf: FewShotClassifier,
) -> None:
    with pytest.raises(DataError, match="single string"):
        tickets_clf.predict("where is my parcel?")
    with pytest.raises(DataError, match="one-dimensional"):
        tickets_clf.predict(np.array([["where is my parcel?"]]))
    with pytest.raises(DataError, match="text 2: expected a string"):
        tickets_clf.predict(["where is my parcel?", 3])
    with pytest.raises(DataError, match="mix strings and integers"):
        FewShotClassifier().fit(["a", "b"], ["x", 1])
