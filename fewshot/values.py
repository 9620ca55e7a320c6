"""Plain values passed between the layers: examples, neighbours, predictions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One labeled example as stored in the workspace."""

    id: int
    text: str
    label: str
    source: str = ""
    created_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the example as a JSON-ready dict."""
        return {
            "id": self.id,
            "text": self.text,
            "label": self.label,
            "source": self.source,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Neighbor:
    """A labeled example retrieved for a query, with its cosine similarity.

    ``kind`` is ``"example"``, or ``"description"`` for a label's prior (its name, or
    ``name: description``: :mod:`fewshot.stages.priors`), which the record shows.
    """

    text: str
    label: str
    similarity: float
    id: int = -1
    kind: str = "example"

    def to_dict(self) -> dict[str, Any]:
        """Return the neighbour as a JSON-ready dict (without the internal id)."""
        record = {"text": self.text, "label": self.label, "similarity": round(self.similarity, 6)}
        return record if self.kind == "example" else {**record, "kind": self.kind}


@dataclass(frozen=True)
class Prediction:
    """The answer for one text: label, confidence, the stage that answered, per-label scores.

    With abstention on (:mod:`fewshot.stages.scope`), ``abstained`` says whether the text was
    refused: then ``label`` is None and ``best_label`` the label it would have had.
    ``in_scope`` is the text's in-scope score (None when the labeled set is too small); the
    record (:meth:`to_dict`) shows these three only with abstention on.
    """

    text: str
    label: str | None
    confidence: float
    stage: str
    scores: Mapping[str, float]
    neighbors: tuple[Neighbor, ...] | None = None
    fallback: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    abstained: bool | None = None  # None: abstention is off
    best_label: str | None = None
    in_scope: float | None = None

    @property
    def best(self) -> str:
        """The label the stage ranked first, refused or not."""
        return str(self.label if self.label is not None else self.best_label)

    def to_dict(self) -> dict[str, Any]:
        """Return the record of the CLI contract as a JSON-ready dict."""
        record: dict[str, Any] = {
            "text": self.text,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "stage": self.stage,
            "scores": {label: round(score, 6) for label, score in self.scores.items()},
        }
        if self.abstained is not None:  # abstention on: records as before otherwise
            record["abstained"] = self.abstained
            if self.abstained:
                record["best_label"] = self.best_label
            if self.in_scope is not None:
                record["in_scope"] = round(self.in_scope, 6)
        if self.fallback is not None:
            record["fallback"] = self.fallback
        if self.neighbors is not None:
            record["neighbors"] = [n.to_dict() for n in self.neighbors]
        record.update(self.extra)
        return record


@dataclass(frozen=True)
class GateFigures:
    """What the promotion gate compared: the candidate and the serving stage, same texts.

    Attributes:
        serving: What serves now (``retrieval`` or ``setfit:vN``).
        baseline: What the candidate was compared with (the serving version, or retrieval
            when that version could not be scored on texts it never saw).
        baseline_accuracy: The baseline's accuracy on the compared held-out texts.
        accuracy_compared: The candidate's accuracy on the same texts.
        baseline_ranking: The baseline encoder's mean pair ranking of them (None if none).
        ranking_compared: The candidate encoder's (None if none).
        compared_on: How many held-out texts were compared.
        right: Per held-out text (the gate's order): 1.0 where the baseline answered it
            right, 0.0 where wrong, NaN where it was not compared (not in the metrics).
    """

    serving: str
    baseline: str
    baseline_accuracy: float
    accuracy_compared: float
    baseline_ranking: float | None
    ranking_compared: float | None
    compared_on: int
    right: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the figures under the names the model's metrics record them by."""
        return {
            "serving": self.serving,
            "baseline": self.baseline,
            "baseline_accuracy": self.baseline_accuracy,
            "accuracy_compared": self.accuracy_compared,
            "baseline_ranking": self.baseline_ranking,
            "ranking_compared": self.ranking_compared,
            "compared_on": self.compared_on,
        }


@dataclass(frozen=True)
class TrainReport:
    """The outcome of one training: the version made, whether it serves, and why.

    Attributes:
        version: The version recorded.
        promoted: Whether it serves now.
        reason: Why it trained (``2 labels reached 8 examples``, ``forced``...).
        gate: The gate's reason for its verdict.
        figures: What the gate compared.
        metrics: Everything recorded in the registry for the version (JSON-ready).
    """

    version: int
    promoted: bool
    reason: str
    gate: str
    figures: GateFigures
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class AddResult:
    """What an add or import changed, and the training it started."""

    added: int
    unchanged: int
    relabeled: int
    training: TrainReport | str | None = None
    """The report when this add trained SetFit, "background" when it started a
    background training, else None."""
