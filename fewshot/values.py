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
    """A labeled example retrieved for a query, with its cosine similarity."""

    text: str
    label: str
    similarity: float
    id: int = -1

    def to_dict(self) -> dict[str, Any]:
        """Return the neighbour as a JSON-ready dict (without the internal id)."""
        return {"text": self.text, "label": self.label, "similarity": round(self.similarity, 6)}


@dataclass(frozen=True)
class Prediction:
    """The answer for one text: label, confidence, the stage that answered, per-label scores."""

    text: str
    label: str
    confidence: float
    stage: str
    scores: Mapping[str, float]
    neighbors: tuple[Neighbor, ...] | None = None
    fallback: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the record of the CLI contract as a JSON-ready dict."""
        record: dict[str, Any] = {
            "text": self.text,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "stage": self.stage,
            "scores": {label: round(score, 6) for label, score in self.scores.items()},
        }
        if self.fallback is not None:
            record["fallback"] = self.fallback
        if self.neighbors is not None:
            record["neighbors"] = [n.to_dict() for n in self.neighbors]
        record.update(self.extra)
        return record
