"""The promotion gate: a SetFit candidate measured against what serves, at no extra training.

**Held out, then continued.** One in ``gate_folds`` (default 3) of each label's examples
is held out; the candidate's encoder is trained on the rest with its share of the recipe's
step budget, a head is fitted, and the whole serving rule (model + retrieval for labels the
model did not learn) answers the held-out part, as does retrieval built from the rest. Then
the same encoder goes on training, with pairs anchored at the held-out examples, for the
remaining steps, and the head is refitted on every example: the model that is kept was
trained with exactly the budget of one training on the whole set. (Cross-validation would
score every example, but its fold models cost two trainings more; the SetFit recipe needs
its pairs, so cheaper fold models made the gate compare an under-trained candidate.) The
serving stage is scored on the same held-out examples: retrieval as above; a serving SetFit
version on those it never saw (they are held out first), when there are at least
``gate_folds`` of them, else by retrieval's figure.

**Calibration.** The first phase's candidate answers the held-out texts with probabilities
the head gave them, before it saw them: the kept model's head is tempered by the temperature
that fits those answers best, pulled towards a SetFit head's usual temperature when they are
few (:func:`fewshot.calibration.fit_temperature_towards` and ``head_prior``; the head is
under-confident otherwise). With no held-out answer, that usual temperature itself.

The gate never sees the workspace: it gets the examples, their stored vectors, the serving
version and a way to load it. The decision is :func:`fewshot.policy.promote`: the candidate serves
unless it is clearly worse on the texts the two disagree on (a sign test). The rankings
(:func:`fewshot.metrics.pair_ranking` of the same examples by each encoder) are recorded
beside the accuracies, not decided on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fewshot import policy
from fewshot.calibration import fit_temperature_towards, head_prior
from fewshot.metrics import pair_ranking
from fewshot.stages.finetune import Run, SetFitConfig, fine_tune, with_head
from fewshot.stages.priors import name_examples
from fewshot.stages.retrieval import Memory, RetrievalStage
from fewshot.stages.setfit import Head, SetFitModel, encode_body
from fewshot.storage.labels import DeclaredLabel
from fewshot.storage.registry import ModelVersion
from fewshot.values import Example, GateFigures, Prediction


@dataclass(frozen=True)
class Learned:
    """The labels a model learns, and the texts their names give.

    ``names`` are ``(text, label)`` from :func:`fewshot.stages.priors.name_examples`.

    The name texts are trained on in both phases and in both heads beside the examples;
    they are never held out, never scored, and outside the step budget.
    """

    labels: list[str]
    names: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, labels: list[str], declared: Sequence[DeclaredLabel] | None) -> Learned:
        """Return ``labels`` with their names' texts; none when ``declared`` is None.

        ``declared`` (the workspace's declared labels) gives the descriptions.
        """
        if declared is None:
            return cls(labels)
        described = {d.name: d.description for d in declared}
        return cls(labels, tuple(name_examples(labels, described)))

    @property
    def name_texts(self) -> list[str]:
        """The names' texts, in label order."""
        return [text for text, _ in self.names]

    @property
    def name_labels(self) -> list[str]:
        """The label of each name's text."""
        return [label for _, label in self.names]


def held_out_part(
    labels: Sequence[str], folds: int, random_state: int, first: Sequence[bool]
) -> np.ndarray:
    """Choose the gate's held-out part: one in ``folds`` of each label's examples (rounded up).

    Within a label the examples marked in ``first`` are taken before the others (the
    examples a serving model never saw, so that it can be compared on them), each group in
    a seeded random order.
    """
    rng = np.random.default_rng(random_state)
    held = np.zeros(len(labels), dtype=bool)
    label_array, preferred = np.asarray(labels), np.asarray(first, dtype=bool)
    for label in sorted(set(labels)):
        members = np.flatnonzero(label_array == label)
        members = members[rng.permutation(len(members))]
        members = np.concatenate([members[preferred[members]], members[~preferred[members]]])
        held[members[: -(-len(members) // folds)]] = True
    return held


@dataclass(frozen=True)
class Gate:
    """What the gate measured on its held-out part, and the steps of each training phase."""

    held_out: np.ndarray  # indices (into the examples) of the held-out part
    rest: np.ndarray  # indices of the others (the first phase trained on their trained labels)
    candidate: np.ndarray  # per held-out example: the candidate rule answered right
    retrieval: np.ndarray  # per held-out example: retrieval (on the rest) answered right
    candidate_ranking: np.ndarray  # per held-out example: pair_ranking against the rest
    retrieval_ranking: np.ndarray  # the same under the encoder retrieval uses
    steps: list[int]  # optimiser steps of each training phase
    answers: tuple[str, ...] = ()  # the candidate's answers (none when it was not scored)
    retrieval_answers: tuple[Prediction, ...] = ()  # retrieval's (on the rest), per held-out
    losses: tuple[float, ...] = ()  # the training loss of each step, both phases
    temperature: tuple[float, int] = (1.0, 0)  # fitted on the candidate's held-out answers, n


@dataclass(frozen=True)
class Split:
    """The gate's held-out part and the step budget of each phase."""

    held: np.ndarray  # per example: held out
    fit: list[int]  # indices of the examples of trained labels
    first: int  # steps of the first phase (0: the rest cannot fit a model)
    second: int  # steps of the second phase

    @classmethod
    def make(
        cls,
        labels: Sequence[str],
        trained_labels: Sequence[str],
        first_choice: Sequence[bool],
        folds: int,
        config: SetFitConfig,
    ) -> Split:
        """Hold out one in ``folds`` of each label and share the budget between phases."""
        held = held_out_part(labels, folds, config.random_state, first_choice)
        fit = [i for i in range(len(labels)) if labels[i] in trained_labels]
        fit_rest = [i for i in fit if not held[i]]
        budget = config.steps(len(fit))
        first = _first_phase(budget, len(fit), len(fit_rest), len({labels[i] for i in fit_rest}))
        return cls(held, fit, first, budget - first)


def held_out_then_continue(
    body: Any,
    examples: list[Example],
    vectors: np.ndarray,
    learned: Learned,
    unseen: set[int],
    folds: int,
    confidence: float,
    run: Run,
) -> tuple[SetFitModel, Gate]:
    """Train ``body`` on all but a held-out part, score that part, then continue on it.

    The budget is the recipe's for the whole set (``config.steps`` of the examples trained
    on): the first phase takes the share of the examples it trains on, the second the rest,
    with pairs anchored at the held-out examples. So the gate costs no training of its own.

    Args:
        body: A fresh, trainable encoder; it is trained in place and becomes the model's.
        examples: Every labeled example.
        vectors: The packaged encoder's vectors of ``examples`` (retrieval's view).
        learned: The labels the model learns, with their names' texts.
        unseen: Ids of the examples the serving model never saw (held out first).
        folds: One in ``folds`` of each label's examples is held out.
        confidence: ``new_label_confidence`` of the serving rule.
        run: How a training phase runs.
    """
    import torch

    texts = [e.text for e in examples]
    labels = [e.label for e in examples]
    config, trained_labels = run.config, learned.labels
    split = Split.make(labels, trained_labels, [e.id in unseen for e in examples], folds, config)
    test, rest = np.flatnonzero(split.held), np.flatnonzero(~split.held)
    rest_labels = [labels[i] for i in rest]
    memory = Memory.build([texts[i] for i in rest], rest_labels, vectors[rest])
    gold = [labels[i] for i in test]
    by_retrieval = RetrievalStage(memory).predict([texts[i] for i in test], vectors[test])
    answers = by_retrieval  # a rest with fewer than two trained labels has no model to fit
    ranking = np.full(len(test), np.nan)
    per_label = sum(label in trained_labels for label in labels) / max(len(trained_labels), 1)
    temperature = (head_prior(per_label), 0)
    torch.manual_seed(config.random_state)
    fit_rest = [i for i in split.fit if not split.held[i]]
    losses: list[float] = []
    if split.first > 0:
        rest_texts, rest_fit_labels = (
            [texts[i] for i in fit_rest] + learned.name_texts,
            [labels[i] for i in fit_rest] + learned.name_labels,
        )
        fine_tune(body, rest_texts, rest_fit_labels, run, split.first, losses=losses)
        answers, ranking, temperature = _candidate_on(
            body, examples, rest, test, learned, by_retrieval, confidence, config
        )
    fit_texts, fit_labels = (
        [texts[i] for i in split.fit] + learned.name_texts,
        [labels[i] for i in split.fit] + learned.name_labels,
    )
    position = {i: k for k, i in enumerate(split.fit)}
    anchors = [position[i] for i in split.fit if split.held[i]] if split.first > 0 else None
    fine_tune(body, fit_texts, fit_labels, run, split.second, anchors, losses)
    gate = Gate(
        held_out=test,
        rest=rest,
        candidate=np.asarray([a.label for a in answers]) == np.asarray(gold),
        retrieval=np.asarray([p.label for p in by_retrieval]) == np.asarray(gold),
        candidate_ranking=ranking,
        retrieval_ranking=pair_ranking(vectors[test], gold, vectors[rest], rest_labels),
        steps=[split.first, split.second] if split.first > 0 else [split.second],
        answers=tuple(a.best for a in answers) if split.first > 0 else (),
        retrieval_answers=tuple(by_retrieval),
        losses=tuple(losses),
        temperature=temperature,
    )
    model = with_head(body, fit_texts, fit_labels, config.random_state)
    calibrated = replace(model.head, temperature=temperature[0])
    return SetFitModel(model.body, calibrated), gate


def _first_phase(budget: int, n_fit: int, n_rest: int, rest_labels: int) -> int:
    """Return the first phase's steps: the rest's share of the budget, leaving one at least.

    0 when the rest holds fewer than two trained labels: there is no model to fit.
    """
    return min(round(budget * n_rest / n_fit), budget - 1) if rest_labels >= 2 else 0


def _candidate_on(
    body: Any,
    examples: list[Example],
    rest: np.ndarray,
    test: np.ndarray,
    learned: Learned,
    retrieval: list[Prediction],
    confidence: float,
    config: SetFitConfig,
) -> tuple[list[Prediction], np.ndarray, tuple[float, int]]:
    """Score the first phase's candidate on the held-out part (``test``).

    A head is fitted on the rest's examples of the trained labels under ``body``; the
    serving rule answers the held-out texts (``retrieval`` covering the labels the model
    never saw); the head also learns the names' texts of ``learned``, as the kept one does;
    :func:`fewshot.metrics.pair_ranking` grades each held-out example against the rest
    under ``body``.

    Returns:
        The answers and the rankings, in ``test`` order, and the head's temperature fitted
        on the answers to the held-out texts of the labels it learned, with their number.
    """
    rest_vectors = encode_body(body, [examples[i].text for i in rest])
    test_vectors = encode_body(body, [examples[i].text for i in test])
    rest_labels = [examples[i].label for i in rest]
    trained = [k for k, label in enumerate(rest_labels) if label in learned.labels]
    head_vectors, head_labels = rest_vectors[trained], [rest_labels[k] for k in trained]
    if learned.names:
        head_vectors = np.vstack([head_vectors, encode_body(body, learned.name_texts)])
        head_labels += learned.name_labels
    head = Head.fit(head_vectors, head_labels, config.random_state)
    texts = [examples[i].text for i in test]
    proba = head.predict_proba(test_vectors)
    answers = policy.answer(head.classes, proba, texts, retrieval, confidence)
    gold = [examples[i].label for i in test]
    own = [k for k, label in enumerate(gold) if label in head.classes]
    truth = np.asarray([head.classes.index(gold[k]) for k in own], dtype=np.int64)
    per_label = (len(trained) + len(own)) / len(head.classes)
    temperature = (fit_temperature_towards(proba[own], truth, head_prior(per_label)), len(own))
    return answers, pair_ranking(test_vectors, gold, rest_vectors, rest_labels), temperature


def unseen_by_serving(
    serving: ModelVersion | None, examples: list[Example], trained_labels: Sequence[str] = ()
) -> set[int]:
    """Ids of the examples the serving model never saw (none when none serves).

    Those of its labels added after it trained, and every example of a label it did not
    learn but the candidate does (``trained_labels``): the serving rule answers those by
    retrieval, and is measured on them beside the candidate that learned them. A label
    neither learned is answered by retrieval on both sides and tells the two apart not at all.
    """
    if serving is None:
        return set()
    new = set(trained_labels) - set(serving.labels)
    return {
        e.id
        for e in examples
        if (e.label in serving.labels and e.id > serving.max_example_id) or e.label in new
    }


def serving_figure(
    examples: list[Example],
    gate: Gate,
    unseen: set[int],
    serving: ModelVersion | None,
    load_model: Callable[[int], SetFitModel],
    minimum: int,
    confidence: float,
) -> GateFigures:
    """Accuracy of the serving stage and of the candidate on the same held-out examples.

    A serving SetFit version is scored on the held-out examples it never saw, when there are
    at least ``minimum`` of them, by the serving rule (the version, and retrieval for the
    labels it never learned, at ``confidence``); otherwise the candidate is compared with
    retrieval's accuracy, and a tie keeps the serving version (no ranking of it was
    measured).
    """
    mine = [k for k, i in enumerate(gate.held_out) if examples[i].id in unseen]
    if serving is not None and len(mine) >= minimum:
        model = load_model(serving.version)
        return _against_version(examples, gate, mine, serving, model, confidence)
    return GateFigures(
        serving="retrieval" if serving is None else serving.name,
        baseline="retrieval",
        baseline_accuracy=float(gate.retrieval.mean()),
        accuracy_compared=float(gate.candidate.mean()),
        baseline_ranking=mean_defined(gate.retrieval_ranking) if serving is None else None,
        ranking_compared=mean_defined(gate.candidate_ranking),
        compared_on=len(gate.held_out),
        right=tuple(gate.retrieval.astype(float)),
    )


def _against_version(
    examples: list[Example],
    gate: Gate,
    mine: list[int],
    serving: ModelVersion,
    model: SetFitModel,
    confidence: float,
) -> GateFigures:
    """Score the serving rule on the held-out examples its model never saw (``mine``)."""
    chosen = [examples[gate.held_out[k]] for k in mine]
    texts = [e.text for e in chosen]
    vectors = model.encode(texts)
    fallback = [gate.retrieval_answers[k] for k in mine]
    answers = policy.answer(
        model.classes, model.head.predict_proba(vectors), texts, fallback, confidence
    )
    right = np.asarray([a.label == e.label for a, e in zip(answers, chosen)])
    per_text = np.full(len(gate.held_out), np.nan)
    per_text[mine] = right
    rest = [examples[i] for i in gate.rest]
    ranking = pair_ranking(
        vectors, [e.label for e in chosen], model.encode([e.text for e in rest]),
        [e.label for e in rest],
    )  # fmt: skip
    return GateFigures(
        serving=serving.name,
        baseline=serving.name,
        baseline_accuracy=float(right.mean()),
        accuracy_compared=float(gate.candidate[mine].mean()),
        baseline_ranking=mean_defined(ranking),
        ranking_compared=mean_defined(gate.candidate_ranking[mine]),
        compared_on=len(mine),
        right=tuple(per_text),
    )


def mean_defined(values: np.ndarray) -> float | None:
    """Return the mean of the defined (non-NaN) values, or None (JSON null) if none is."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else None


def verdict(
    figures: GateFigures, candidate: np.ndarray, margin: float, new_labels: Sequence[str] = ()
) -> policy.Verdict:
    """Return the gate's decision on the figures of :func:`serving_figure`.

    ``candidate`` is :attr:`Gate.candidate` (per held-out text, right or not); the texts
    compared are those ``figures.right`` defines. ``new_labels`` are the labels the
    candidate learned and the serving model did not.
    """
    serving = np.asarray(figures.right, dtype=float)
    compared = ~np.isnan(serving)
    return policy.promote(
        [bool(x) for x in candidate[compared]],
        [bool(x) for x in serving[compared]],
        margin,
        new_labels,
    )


__all__ = [
    "Gate",
    "Learned",
    "Split",
    "held_out_part",
    "held_out_then_continue",
    "mean_defined",
    "serving_figure",
    "unseen_by_serving",
    "verdict",
]
