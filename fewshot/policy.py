"""When to train, when to promote, and who answers a text: the SetFit stage's rules.

* **Threshold** (``min_per_label``, default 8): a label takes part in training once it has
  that many examples; training starts as soon as **two** labels have reached it. Labels
  still below it are left out of the model and stay answerable by retrieval (see
  :func:`combine`), exactly like a label added after training.
* **Retraining** (automatic): when a label reaches the threshold that the latest model (of
  any status) was not trained on, or the examples of threshold labels grew by
  ``retrain_growth`` (default 50%) since then. A rejected candidate therefore does not
  retrain on every add: the next try waits for the same growth.
* **Recipe by shape** (``loss auto``, the default): the SetFit paper's sampled pairs below
  :data:`MANY_LABELS` (10) trained labels, the in-batch contrastive loss from there on
  (:func:`loss_for`): on the benchmark, pairs are 1.9 points ahead on the six few-label
  datasets and contrastive 5.6 points ahead on 64 intents, at a sixth of the time.
* **Promotion gate**: the candidate serves unless it is clearly worse than the stage serving
  now on a held-out part of the labeled set (a sign test on the texts the two disagree on,
  :func:`promote`), and no guard fired (:func:`guard`). ``gate_margin`` above 0 asks instead
  for that much more held-out accuracy. See ``fewshot/tasks/gate.py``.
* **Who answers**: the SetFit model, unless retrieval's label is one the model never saw and
  retrieval is at least ``new_label_confidence`` (default 0.5) sure of it.
* **The LLM** (when one is configured) answers the gate's held-out texts too and serves only
  when it beats the local stage that serves on them by more than a statistical tie
  (:func:`llm_serves`): a tie goes to the local stage (no cost, nothing leaves the machine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fewshot.storage.registry import ModelVersion
from fewshot.values import Prediction

MANY_LABELS = 10


def loss_for(setting: str, n_labels: int) -> str:
    """Return the training objective for ``n_labels`` trained labels (``loss`` setting).

    ``auto`` takes ``pairs`` below :data:`MANY_LABELS` labels and ``contrastive`` from there
    on; any other setting is its own answer.
    """
    if setting != "auto":
        return setting
    return "contrastive" if n_labels >= MANY_LABELS else "pairs"


def eligible(counts: Mapping[str, int], min_per_label: int) -> list[str]:
    """Return the labels that reached the threshold, sorted."""
    return sorted(label for label, n in counts.items() if n >= min_per_label)


def training_due(
    counts: Mapping[str, int],
    models: Sequence[ModelVersion],
    min_per_label: int,
    growth: float,
) -> str | None:
    """Return why SetFit should train now, or None when it should not.

    Args:
        counts: ``{label: number of examples}``.
        models: The model registry, oldest first.
        min_per_label: The threshold.
        growth: The growth of the threshold labels' examples that retrains
            (``retrain_growth``).
    """
    ready = eligible(counts, min_per_label)
    if len(ready) < 2:
        return None
    if not models:
        return f"{len(ready)} labels reached {min_per_label} examples"
    last = models[-1]
    new = [label for label in ready if label not in last.labels]
    if new:
        return f"label '{new[0]}' reached the threshold"
    size = sum(counts[label] for label in ready)
    if size >= last.n_examples * (1 + growth):
        return f"the labeled set grew by {growth:.0%} since version {last.version}"
    return None


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on a candidate and the reason it states."""

    promoted: bool
    reason: str


GATE_EVIDENCE = 0.1


def sign_test(wins: int, losses: int) -> float:
    """One-sided sign test: the chance of at least ``wins`` of ``wins + losses`` under a tie."""
    total = wins + losses
    return float(sum(math.comb(total, i) for i in range(wins, total + 1)) / 2**total)


def promote(
    candidate_right: Sequence[bool],
    serving_right: Sequence[bool],
    margin: float,
    new_labels: Sequence[str] = (),
) -> Verdict:
    """Decide whether the candidate takes over (the gate), and say why.

    Both answered the same held-out texts (per text: right or not). With ``margin`` 0 (the
    default) the candidate serves **unless it is clearly worse**: only the texts the two
    disagree on tell them apart, and the candidate is kept out when the serving stage alone
    was right on more of them and a one-sided sign test gives at most
    :data:`GATE_EVIDENCE` (0.1) for that under a tie (4 against 0, 6 against 1, 9 against
    3...). A tie or a small difference promotes: the benchmark's prior says a fine-tuned
    model of the recipe for this shape beats retrieval (see ``docs/architecture.md``), and a
    few held-out texts cannot overturn that. With ``margin`` above 0 the candidate must be
    more accurate by more than ``margin``, and a tie never wins.

    Args:
        candidate_right: Per compared held-out text, the candidate answered it right.
        serving_right: The same for the serving stage.
        margin: The accuracy the candidate must add (``gate_margin``; 0: unless worse).
        new_labels: Labels the candidate learned and the serving model did not (named in
            the reason of a tie).
    """
    better = sum(bool(c) and not bool(s) for c, s in zip(candidate_right, serving_right))
    worse = sum(bool(s) and not bool(c) for c, s in zip(candidate_right, serving_right))
    n = max(len(candidate_right), 1)
    if margin > 0:
        if (better - worse) / n > margin + 1e-12:
            return Verdict(True, f"held-out accuracy higher by more than {margin:g}")
        return Verdict(False, f"held-out accuracy not higher by more than {margin:g}")
    told = f"it alone was right on {better} held-out texts, the serving stage alone on {worse}"
    if better > worse:
        return Verdict(True, f"higher held-out accuracy ({told})")
    if better == worse:
        if new_labels:
            shown = ", ".join(f"'{label}'" for label in new_labels)
            return Verdict(True, f"same held-out accuracy, and it knows {shown}")
        return Verdict(True, "same held-out accuracy: a tie goes to the fine-tuned model")
    p = sign_test(worse, better)
    if p <= GATE_EVIDENCE:
        return Verdict(False, f"clearly lower held-out accuracy: {told} (sign test p = {p:.3f})")
    return Verdict(True, f"lower held-out accuracy by a statistical tie: {told} (p = {p:.3f})")


CHANCE_MIN_PER_LABEL = 10


def guard(
    answers: Sequence[str],
    gold: Sequence[str],
    losses: Sequence[float],
    trained: Sequence[str] = (),
) -> str | None:
    """Return why a candidate is broken whatever the held-out comparison says, or None.

    The guards: the training loss was not finite, or did not fall (the mean of the last
    quarter of the steps against the first quarter, when at least 8 steps were logged);
    every held-out text of the labels the model learned (``trained``; all when empty) got
    the same answer while they have two labels or more; the
    held-out accuracy is at or below chance (one over the held-out labels), once there are
    at least :data:`CHANCE_MIN_PER_LABEL` held-out texts per label. Below that, chance is
    no evidence: on the benchmark's 18 support sets of 8 per label (3 held out per label),
    9 candidates scored at or below chance on the held-out part, and 8 of them beat
    retrieval on the test set (the 5 the gate promoted among them all did).

    Args:
        answers: The candidate's answers to the held-out texts (empty: not scored).
        gold: Their labels.
        losses: The training loss of each step.
        trained: The labels the model was trained on.
    """
    if any(not math.isfinite(x) for x in losses):
        return "the training loss was not finite"
    quarter = len(losses) // 4
    if quarter >= 2 and np.mean(losses[-quarter:]) >= np.mean(losses[:quarter]):
        return "the training loss did not fall"
    labels = set(gold)
    if not answers or len(labels) < 2:
        return None
    own = [a for a, g in zip(answers, gold) if not trained or g in trained]
    if len({g for g in gold if not trained or g in trained}) >= 2 and len(set(own)) == 1:
        return f"it answered '{own[0]}' to every held-out text of its labels"
    accuracy = float(np.mean([a == g for a, g in zip(answers, gold)]))
    if len(gold) >= CHANCE_MIN_PER_LABEL * len(labels) and accuracy <= 1 / len(labels):
        return f"its held-out accuracy {accuracy:.2f} is at or below chance ({1 / len(labels):.2f})"
    return None


LLM_EVIDENCE = 0.1


def llm_serves(llm_right: Sequence[bool], local_right: Sequence[bool]) -> Verdict:
    """Decide whether a configured LLM answers instead of the local stage, and say why.

    Both answered the same held-out texts. Only the texts they disagree on tell them apart:
    ``better`` where the LLM alone was right, ``worse`` where the local stage alone was. The
    LLM serves when ``better > worse`` and a one-sided sign test gives at most
    :data:`LLM_EVIDENCE` (0.1) for a tie, e.g. 4 against 0, 6 against 1, 9 against 3;
    anything less is a statistical tie and the local stage serves.
    """
    better = sum(bool(x) and not bool(y) for x, y in zip(llm_right, local_right))
    worse = sum(bool(y) and not bool(x) for x, y in zip(llm_right, local_right))
    p = sign_test(better, worse)
    told = f"the LLM alone was right on {better} held-out texts, the local stage alone on {worse}"
    if better > worse and p <= LLM_EVIDENCE:
        return Verdict(True, f"{told} (sign test p = {p:.3f})")
    return Verdict(False, f"{told}: a tie or worse (p = {p:.3f}), the local stage serves")


def combine(
    model: Prediction, retrieval: Prediction, classes: Sequence[str], confidence: float
) -> Prediction:
    """Return the answer for one text from the model's and retrieval's predictions.

    Retrieval answers when its label is one the model was not trained on and it is at least
    ``confidence`` sure; otherwise the model does.
    """
    if retrieval.label not in classes and retrieval.confidence >= confidence:
        return retrieval
    return model


def answer(
    classes: Sequence[str],
    proba: np.ndarray,
    texts: Sequence[str],
    retrieval: list[Prediction],
    confidence: float,
    explain_neighbors: list[Any] | None = None,
) -> list[Prediction]:
    """Apply the serving rule: the model answers, retrieval for labels the model never saw.

    ``proba`` holds the model's probabilities for ``texts``, columns in ``classes`` order.
    """
    answers = []
    for i, (text, row, fallback) in enumerate(zip(texts, proba, retrieval)):
        best = int(row.argmax())
        own = Prediction(
            text=text,
            label=classes[best],
            confidence=float(row[best]),
            stage="setfit",
            scores={c: float(s) for c, s in zip(classes, row)},
            neighbors=None if explain_neighbors is None else tuple(explain_neighbors[i]),
        )
        answers.append(combine(own, fallback, classes, confidence))
    return answers


__all__ = [
    "GATE_EVIDENCE",
    "LLM_EVIDENCE",
    "MANY_LABELS",
    "Verdict",
    "answer",
    "combine",
    "eligible",
    "guard",
    "llm_serves",
    "loss_for",
    "promote",
    "sign_test",
    "training_due",
]
