"""FewShotClassifier: the scikit-learn shape, and right answers on separable data."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot import FewShotClassifier
from fewshot.errors import ConfigError, DataError

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
