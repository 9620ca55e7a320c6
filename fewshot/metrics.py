"""Classification metrics in plain numpy (checked against scikit-learn in the tests).

Conventions, the same as ``fewshot eval`` documents:

* ``macro_f1`` averages the F1 of the labels **present in the evaluated file** (the true
  labels); a predicted label that never occurs in the file adds no term of its own, but its
  predictions still cost the true labels their recall. This is scikit-learn's
  ``f1_score(..., labels=sorted(set(y_true)), average="macro", zero_division=0)``.
* A precision, recall or F1 whose denominator is zero is 0.
* The confusion matrix spans the union of true and predicted labels, sorted; row = true
  label, column = predicted label.
* ``mcc`` is the multi-class Matthews correlation (Gorodkin's R_K) over that matrix; it is 0
  when it is undefined (every prediction, or every true label, is the same class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fewshot.errors import DataError


@dataclass(frozen=True)
class LabelScore:
    """Precision, recall, F1 and support (true occurrences) of one label."""

    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        """Return the scores as a JSON-ready dict."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
        }


@dataclass(frozen=True)
class Confusion:
    """A confusion matrix: ``matrix[i][j]`` counts texts of ``labels[i]`` predicted ``labels[j]``.

    Rows are true labels, columns predicted labels, both in ``labels`` order.
    """

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"labels": [...], "matrix": [[...]]}``."""
        return {"labels": list(self.labels), "matrix": [list(row) for row in self.matrix]}

    def array(self) -> np.ndarray:
        """Return the matrix as an int64 array."""
        return np.array(self.matrix, dtype=np.int64).reshape(len(self.labels), len(self.labels))


@dataclass(frozen=True)
class Metrics:
    """Every metric of one set of predictions (see the module docstring for conventions)."""

    n: int
    accuracy: float
    macro_f1: float
    mcc: float
    per_label: dict[str, LabelScore]
    confusion: Confusion

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a JSON-ready dict."""
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "mcc": self.mcc,
            "per_label": {label: s.to_dict() for label, s in self.per_label.items()},
            "confusion": self.confusion.to_dict(),
        }


def _check(y_true: Sequence[str], y_pred: Sequence[str]) -> None:
    if len(y_true) != len(y_pred):
        raise DataError(f"got {len(y_true)} true labels but {len(y_pred)} predictions.")
    if len(y_true) == 0:
        raise DataError("no labeled texts to evaluate; give at least one.")


def confusion(y_true: Sequence[str], y_pred: Sequence[str]) -> Confusion:
    """Return the confusion matrix over the sorted union of true and predicted labels."""
    _check(y_true, y_pred)
    labels = sorted({str(x) for x in y_true} | {str(x) for x in y_pred})
    column = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([column[str(t)] for t in y_true], [column[str(p)] for p in y_pred]), 1)
    return Confusion(tuple(labels), tuple(tuple(int(x) for x in row) for row in matrix))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def matthews(matrix: np.ndarray) -> float:
    """Return the multi-class Matthews correlation of a confusion matrix (0 if undefined)."""
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    correct = np.trace(m)
    true_counts = m.sum(axis=1)
    pred_counts = m.sum(axis=0)
    cov_tp = correct * total - float(true_counts @ pred_counts)
    cov_pp = total**2 - float(pred_counts @ pred_counts)
    cov_tt = total**2 - float(true_counts @ true_counts)
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_pp * cov_tt))


def evaluate_labels(y_true: Sequence[str], y_pred: Sequence[str]) -> Metrics:
    """Return accuracy, macro-F1, MCC, per-label scores and the confusion matrix.

    Args:
        y_true: The true label of each text.
        y_pred: The predicted label of each text, in the same order.

    Raises:
        DataError: If the lengths differ or there is nothing to evaluate.
    """
    conf = confusion(y_true, y_pred)
    matrix = conf.array()
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _ratio(tp, predicted.astype(np.float64))
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0
    per_label = {
        label: LabelScore(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, label in enumerate(conf.labels)
        if present[i]
    }
    return Metrics(
        n=int(matrix.sum()),
        accuracy=float(tp.sum() / matrix.sum()),
        macro_f1=float(f1[present].mean()),
        mcc=matthews(matrix),
        per_label=per_label,
        confusion=conf,
    )


def pair_ranking(
    queries: np.ndarray,
    query_labels: Sequence[str],
    references: np.ndarray,
    reference_labels: Sequence[str],
) -> np.ndarray:
    """Per query: how well its similarities put its own label's references above the others.

    The share of (same-label, other-label) reference pairs whose same-label one has the
    higher inner product with the query, ties counting a half: the area under the ROC curve
    of the query's similarities to the references. An encoder that groups texts by label
    scores near 1, one that ignores the labels near 0.5. It grades each query finely where
    right / wrong gives one bit.

    Args:
        queries: (n, d) vectors.
        query_labels: Their labels.
        references: (m, d) vectors.
        reference_labels: Their labels.

    Returns:
        (n,) floats; NaN where no reference has the query's label, or every one has.
    """
    out = np.full(len(query_labels), np.nan)
    if len(query_labels) == 0 or len(reference_labels) == 0:
        return out
    similarities = np.asarray(queries) @ np.asarray(references).T
    reference_array = np.asarray(reference_labels)
    for i, label in enumerate(query_labels):
        own = reference_array == label
        if own.any() and not own.all():
            other = np.sort(similarities[i, ~own])
            below = np.searchsorted(other, similarities[i, own], side="left")
            level = np.searchsorted(other, similarities[i, own], side="right") - below
            out[i] = float((below + level / 2).mean() / len(other))
    return out


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Return the area under the ROC curve of scores meant to rank ``positive`` above.

    The share of (positive, negative) pairs whose positive score is higher, ties counting a
    half (the Mann-Whitney statistic); None when either side is empty.
    """
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.sort(np.asarray(negative, dtype=np.float64))
    if len(pos) == 0 or len(neg) == 0:
        return None
    below = np.searchsorted(neg, pos, side="left")
    level = np.searchsorted(neg, pos, side="right") - below
    return float((below + level / 2).sum() / (len(pos) * len(neg)))


__all__ = [
    "Confusion",
    "LabelScore",
    "Metrics",
    "auroc",
    "confusion",
    "evaluate_labels",
    "matthews",
    "pair_ranking",
]


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    """Return the top-label expected calibration error over ``bins`` equal-width bins.

    Each answer falls in the bin of its confidence (``(lo, hi]``, the first bin also takes
    0); the ECE is the mean over bins of ``|accuracy - mean confidence|`` weighted by the
    share of answers in the bin. 0 for no answers.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    if conf.shape != right.shape:
        raise DataError(f"got {len(conf)} confidences but {len(right)} outcomes.")
    if len(conf) == 0:
        return 0.0
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(right[members].mean() - conf[members].mean())
    return float(total)


def reliability(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[tuple[float, float, int]]:
    """Return ``(mean confidence, accuracy, count)`` of each non-empty bin (as in the ECE)."""
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return [
        (float(conf[which == b].mean()), float(right[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]
