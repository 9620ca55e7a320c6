"""``fewshot eval``: classify a labeled file with a workspace as it serves now, and score it.

Labels of the file that the workspace does not know (no labeled example carries them) can
never be predicted. They are **kept in every metric** (each such row counts as an error and
its label gets a row in ``per_label`` with recall 0), because dropping them would overstate
how well the workspace does on that file; they are **reported** in ``unknown_labels``
(``{label: rows}``), and ``known`` gives ``n`` and ``accuracy`` over the other rows, so the
two effects can be told apart. Metric conventions are in :mod:`fewshot.metrics`.

Rows whose label is empty, or the setting ``out_of_scope_label`` (``out of scope``) when the
workspace has no such label, are **out of scope**: their right answer is a refusal. Refused
answers and those rows both count as the label ``(none of these)`` in every metric, and
``out_of_scope`` reports the refusals: out-of-scope recall and precision, the AUROC of the
in-scope score, and the accuracy on the in-scope rows.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot.dataio import read_labeled
from fewshot.errors import ConfigError, MissingExtraError
from fewshot.metrics import (
    Confusion,
    Metrics,
    auroc,
    evaluate_labels,
    expected_calibration_error,
    reliability,
)
from fewshot.storage.files import atomic_write_bytes
from fewshot.values import Prediction

Classify = Callable[[list[str]], list[Prediction]]
REFUSED = "(none of these)"  # the label an out-of-scope row and a refused answer count as


@dataclass(frozen=True)
class ScopeReport:
    """How abstention did on a file with out-of-scope rows (empty or configured label).

    Attributes:
        n: Out-of-scope rows.
        recall: The share of them refused.
        precision: The share of refused answers that were out of scope (None: none refused).
        auroc: AUROC of the in-scope score, in-scope rows against out-of-scope ones (None
            when the answers carry no in-scope score).
        in_scope_n: In-scope rows.
        in_scope_accuracy: The share of those answered with their label (a refusal is wrong).
        in_scope_refused: The share of those refused.
    """

    n: int
    recall: float
    precision: float | None
    auroc: float | None
    in_scope_n: int
    in_scope_accuracy: float | None
    in_scope_refused: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a JSON-ready dict."""
        return {
            "n": self.n,
            "recall": self.recall,
            "precision": self.precision,
            "auroc": self.auroc,
            "in_scope": {
                "n": self.in_scope_n,
                "accuracy": self.in_scope_accuracy,
                "refused": self.in_scope_refused,
            },
        }


def scope_report(
    predictions: Sequence[Prediction], out_of_scope: Sequence[bool], truth: Sequence[str]
) -> ScopeReport:
    """Score the refusals of ``predictions`` against which rows are ``out_of_scope``."""
    refused = [p.abstained is True for p in predictions]
    oos = [i for i, flag in enumerate(out_of_scope) if flag]
    ins = [i for i, flag in enumerate(out_of_scope) if not flag]
    caught = sum(refused[i] for i in oos)
    known = all(p.in_scope is not None for p in predictions)
    scores = [0.0 if p.in_scope is None else p.in_scope for p in predictions]
    right = [predictions[i].label == truth[i] for i in ins]
    return ScopeReport(
        n=len(oos),
        recall=caught / len(oos) if oos else 0.0,
        precision=caught / sum(refused) if any(refused) else None,
        auroc=auroc([scores[i] for i in ins], [scores[i] for i in oos]) if known else None,
        in_scope_n=len(ins),
        in_scope_accuracy=sum(right) / len(ins) if ins else None,
        in_scope_refused=sum(refused[i] for i in ins) / len(ins) if ins else None,
    )


@dataclass(frozen=True)
class EvalReport:
    """The outcome of evaluating a workspace on one labeled file.

    Attributes:
        path: The evaluated file.
        metrics: Accuracy, macro-F1, MCC, per-label scores, confusion over every row.
        stages: How many texts each stage answered (``{"retrieval": 120}``).
        unknown_labels: ``{label: rows}`` for labels of the file the workspace does not know.
        known_n: Rows whose label the workspace knows.
        known_accuracy: Accuracy over those rows (None when there are none).
        seconds: Wall time of the classification.
        ece: Expected calibration error of the answers' confidences (top label, 10 bins).
        reliability: ``(mean confidence, accuracy, count)`` per non-empty bin.
        stage: The stage asked to answer (``auto``: the workspace's rule).
        llm_calls: Requests sent to an LLM.
        abstained: Answers refused ("none of these").
        out_of_scope: How abstention did, when the file has out-of-scope rows.
    """

    path: str
    metrics: Metrics
    stages: dict[str, int]
    unknown_labels: dict[str, int]
    known_n: int
    known_accuracy: float | None
    seconds: float
    ece: float = 0.0
    reliability: tuple[tuple[float, float, int], ...] = ()
    stage: str = "auto"
    llm_calls: int = 0
    abstained: int = 0
    out_of_scope: ScopeReport | None = None

    @property
    def texts_per_second(self) -> float:
        """Classification throughput (texts per second of wall time)."""
        return self.metrics.n / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """Return the report of the ``eval`` contract as a JSON-ready dict."""
        metrics = self.metrics.to_dict()
        return {
            "path": self.path,
            "n": metrics.pop("n"),
            "accuracy": metrics.pop("accuracy"),
            "macro_f1": metrics.pop("macro_f1"),
            **metrics,
            "stages": dict(self.stages),
            "unknown_labels": dict(self.unknown_labels),
            "known": {"n": self.known_n, "accuracy": self.known_accuracy},
            "ece": self.ece,
            "stage": self.stage,
            "llm_calls": self.llm_calls,
            "abstained": self.abstained,
            "out_of_scope": None if self.out_of_scope is None else self.out_of_scope.to_dict(),
            "seconds": round(self.seconds, 4),
            "texts_per_second": round(self.texts_per_second, 2),
        }


def evaluate(
    classify: Classify,
    known: Collection[str],
    path: str | os.PathLike[str],
    text_field: str = "text",
    label_field: str = "label",
    plot: str | os.PathLike[str] | None = None,
    out_of_scope: str | None = None,
) -> EvalReport:
    """Classify the labeled file ``path`` with ``classify`` and score the predictions.

    Args:
        classify: Answers a list of texts (the workspace as it serves now; nothing changes).
        known: The labels the classifier knows (the others are reported as unknown).
        path: A labeled CSV / TSV / JSONL file.
        text_field: The text column.
        label_field: The label column.
        plot: If given, write a PNG of the confusion matrix and the reliability diagram.
        out_of_scope: A label that marks a row as out of scope (as an empty label does),
            unless the classifier knows it.

    Raises:
        DataError: For an unreadable or malformed file (nothing is classified then).
        MissingExtraError: If ``plot`` is given and matplotlib is not installed.
        ConfigError: If ``plot``'s folder does not exist.
    """
    stages = {"auto": classify}
    return compare(stages, known, path, text_field, label_field, plot, out_of_scope)[0]


def compare(
    stages: Mapping[str, Classify],
    known: Collection[str],
    path: str | os.PathLike[str],
    text_field: str = "text",
    label_field: str = "label",
    plot: str | os.PathLike[str] | None = None,
    out_of_scope: str | None = None,
) -> list[EvalReport]:
    """Score each of ``stages`` (name -> classify) on the same labeled file, in order.

    The file is read and checked once, before anything is classified; ``plot`` draws the
    first stage's report. See :func:`evaluate` for the rest.
    """
    file = Path(path)
    rows = read_labeled(file, text_field, label_field, empty_label=True)
    if plot is not None:
        _check_plot_target(Path(plot))
    texts = [text for text, _, _ in rows]
    names = {"", out_of_scope} - set(known)
    truth = [REFUSED if label in names else label for _, label, _ in rows]
    reports = [score(name, run, texts, truth, known, str(file)) for name, run in stages.items()]
    if plot is not None:
        plot_report(reports[0], Path(plot), title=file.name)
    return reports


def score(
    stage: str,
    classify: Classify,
    texts: list[str],
    truth: list[str],
    known: Collection[str],
    path: str,
) -> EvalReport:
    """Classify ``texts`` with ``classify`` and score the answers against ``truth``."""
    start = time.perf_counter()
    predictions = classify(texts)
    seconds = time.perf_counter() - start
    predicted = [REFUSED if p.label is None else p.label for p in predictions]
    unknown = Counter(label for label in truth if label not in known and label != REFUSED)
    out_of_scope = [label == REFUSED for label in truth]
    pairs = [(t, p) for t, p in zip(truth, predicted) if t in known]
    confidences = [p.confidence for p in predictions]
    correct = [t == p for t, p in zip(truth, predicted)]
    return EvalReport(
        path=path,
        metrics=evaluate_labels(truth, predicted),
        stages=dict(sorted(Counter(p.stage for p in predictions).items())),
        unknown_labels=dict(sorted(unknown.items())),
        known_n=len(pairs),
        known_accuracy=sum(t == p for t, p in pairs) / len(pairs) if pairs else None,
        seconds=seconds,
        ece=expected_calibration_error(confidences, correct),
        reliability=tuple(reliability(confidences, correct)),
        stage=stage,
        llm_calls=sum(_asked_an_llm(p) for p in predictions) if stage in ("llm", "auto") else 0,
        abstained=sum(p.abstained is True for p in predictions),
        out_of_scope=scope_report(predictions, out_of_scope, truth) if any(out_of_scope) else None,
    )


SETFIT_FALLBACKS = ("no SetFit model serves", "model v")


def _asked_an_llm(prediction: Prediction) -> bool:
    """Whether an LLM was asked for this answer (it answered, or failed and retrieval did)."""
    fallback = prediction.fallback
    return prediction.stage == "llm" or (
        fallback is not None and not fallback.startswith(SETFIT_FALLBACKS)
    )


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise MissingExtraError(
            "matplotlib", "plot", "--plot (a confusion-matrix picture)"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_plot_target(path: Path) -> None:
    _pyplot()
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(
            f"{path}: the folder {parent} does not exist; create it or pick another --plot path."
        )
    if path.is_dir():
        raise ConfigError(f"{path}: expected a PNG file name for --plot, found a directory.")


def plot_report(report: EvalReport, path: Path, title: str = "") -> Path:
    """Write a PNG: the confusion matrix beside the reliability diagram.

    The matrix has a row per true label and a column per predicted one; the diagram shows
    accuracy against confidence per bin, with the ECE in its title.

    Raises:
        MissingExtraError: If matplotlib is not installed (``pip install 'fewshot[plot]'``).
    """
    plt = _pyplot()
    size = max(4.0, 0.6 * len(report.metrics.confusion.labels) + 2.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(size + 4.5, size), dpi=100)
    try:
        _draw_confusion(left, report.metrics.confusion, title)
        _draw_reliability(right, report.reliability, report.ece)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _draw_confusion(ax: Any, confusion: Confusion, title: str) -> None:
    matrix = confusion.array()
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(confusion.labels))
    ax.set_xticks(ticks, confusion.labels, rotation=45, ha="right")
    ax.set_yticks(ticks, confusion.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix {title}".strip())
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in _cells(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)


def _draw_reliability(ax: Any, bins: Sequence[tuple[float, float, int]], ece: float) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    if bins:
        confidence, accuracy, _ = zip(*bins)
        ax.plot(confidence, accuracy, marker="o", label="answers")
        for x, y, n in bins:
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")


def _cells(matrix: Any) -> list[tuple[tuple[int, int], int]]:
    return [
        ((i, j), int(matrix[i, j])) for i in range(matrix.shape[0]) for j in range(matrix.shape[1])
    ]


__all__ = [
    "REFUSED",
    "EvalReport",
    "ScopeReport",
    "compare",
    "evaluate",
    "plot_report",
    "scope_report",
    "score",
]
