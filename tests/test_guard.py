"""The gate's failure guards keep a broken candidate out whatever the comparison says."""

from __future__ import annotations

import math

from fewshot.policy import CHANCE_MIN_PER_LABEL, guard


def test_a_loss_that_is_not_finite_fires() -> None:
    assert guard([], [], [0.3, math.nan, 0.2]) == "the training loss was not finite"
    assert guard([], [], [0.3, math.inf]) == "the training loss was not finite"


def test_a_loss_that_does_not_fall_fires_once_enough_steps_were_logged() -> None:
    rising = [0.20, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27]
    assert guard([], [], rising) == "the training loss did not fall"
    assert guard([], [], rising[::-1]) is None
    assert guard([], [], rising[:7]) is None  # 7 steps: too few to judge a trend


def test_one_answer_for_texts_of_two_labels_fires() -> None:
    gold = ["billing", "billing", "shipping", "shipping", "login"]
    answers = ["billing", "billing", "billing", "billing", "login"]  # login: retrieval's
    reason = "it answered 'billing' to every held-out text of its labels"
    assert guard(answers, gold, [], trained=["billing", "shipping"]) == reason
    right = ["billing", "billing", "shipping", "shipping", "login"]
    assert guard(right, gold, [], trained=["billing", "shipping"]) is None
    assert guard(["a", "a"], ["a", "a"], []) is None  # one label held out: no evidence


def test_chance_fires_only_with_enough_held_out_texts() -> None:
    gold = ["a", "b"] * CHANCE_MIN_PER_LABEL
    coin = ["a", "a"] * CHANCE_MIN_PER_LABEL  # a wrong on every b: 50%, at chance
    half = ["a"] * CHANCE_MIN_PER_LABEL + ["b"] * CHANCE_MIN_PER_LABEL  # also 50%, two answers
    assert guard(half, gold, []) == "its held-out accuracy 0.50 is at or below chance (0.50)"
    assert guard(coin, gold, []) is not None  # fired as one answer before chance
    good = ["a", "b"] * CHANCE_MIN_PER_LABEL
    assert guard(good, gold, []) is None
    few = guard(["a", "a", "b"], ["a", "b", "a"], [])  # 1 of 3 right, 3 texts: no evidence
    assert few is None


def test_a_tie_goes_to_the_candidate_that_knows_more_labels() -> None:
    from fewshot.policy import promote

    same = ([True, True, False], [True, True, False])
    known = promote(*same, 0.0, new_labels=["login"])
    assert (known.promoted, known.reason) == (True, "same held-out accuracy, and it knows 'login'")
    # clearly worse (4 against 0) stays out, new labels or not
    worse = promote([False] * 4, [True] * 4, 0.0, new_labels=["login"])
    assert worse.promoted is False and worse.reason.startswith("clearly lower")
    margin = promote(*same, 0.05, new_labels=["login"])
    assert margin.promoted is False  # a margin asks for more accuracy, coverage or not


def test_temperature_scaling_softens_overconfident_scores_and_keeps_the_answer() -> None:
    import numpy as np

    from fewshot.calibration import fit_temperature, rescale, shrunk

    # 100 answers at 0.99, 70 right: over-confident; the fitted temperature softens them
    proba = np.tile([0.99, 0.01], (100, 1))
    truth = np.array([0] * 70 + [1] * 30)
    temperature = fit_temperature(proba, truth)
    assert temperature > 1.5
    softened = rescale(proba, temperature)
    assert abs(softened[0, 0] - 0.7) < 0.03  # about the accuracy
    assert (softened.argmax(axis=1) == proba.argmax(axis=1)).all()  # the same answers
    assert shrunk(4.0, 20, shrink=20) == 2.0  # half the log-temperature kept at n = shrink
    assert shrunk(4.0, 0) == 1.0
    assert fit_temperature(proba[:0], truth[:0]) == 1.0


def test_leave_one_out_scores_each_example_without_itself() -> None:
    import numpy as np

    from fewshot.stages.retrieval import Memory, Vote, leave_one_out

    def unit(*xs: float) -> list[float]:
        v = np.asarray(xs, dtype=np.float32)
        return list(v / np.linalg.norm(v))

    # a0's nearest *other* example is b0 (label b): without itself, a0 is answered b.
    # a1 is far from b and near a0; b0 and b1 are near each other.
    vectors = np.asarray(
        [unit(1, 0.0, 0), unit(0.2, 1, 0), unit(0.9, 0.44, 0), unit(0.95, 0.31, 0),
         unit(0, 0, 1), unit(-1, -1, -1)],  # c and d: one example each
        dtype=np.float32,
    )  # fmt: skip
    labels = ["a", "a", "b", "b", "c", "d"]
    memory = Memory.build([f"t{i}" for i in range(6)], labels, vectors)
    scores, truth = leave_one_out(memory, Vote(k=1, mix=1.0))  # the nearest other decides
    assert truth.tolist() == [0, 0, 1, 1]  # c and d have one example each: left out
    # a0 (1, 0, 0): its nearest other is b1 -> b. Were a0 its own neighbour, a would win.
    assert memory.classes[int(scores[0].argmax())] == "b"
    assert np.allclose(scores.sum(axis=1), 1.0)
