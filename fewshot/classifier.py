"""An in-memory, scikit-learn shaped few-shot classifier (the retrieval stage, no disk).

Used by ``eval`` and the benchmarks, and handy in notebooks::

    clf = FewShotClassifier().fit(texts, labels)
    clf.predict(["where is my parcel?"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fewshot.dataio import clean_text
from fewshot.embed import DEFAULT_MODEL, Encoder
from fewshot.errors import ConfigError, DataError
from fewshot.stages.retrieval import (
    DEFAULT_K,
    DEFAULT_MIX,
    DEFAULT_PROTOTYPE_TEMPERATURE,
    DEFAULT_TEMPERATURE,
    Memory,
    RetrievalStage,
    Vote,
)


class FewShotClassifier:
    """Nearest-neighbour + prototype vote over sentence embeddings.

    Args:
        model: Encoder name or path (default: the packaged all-MiniLM-L6-v2).
        k: Neighbours that vote.
        temperature: Softness of the neighbour vote.
        prototype_temperature: Softness of the prototype vote.
        mix: Weight of the neighbour vote against the prototype vote.
        batch_size: Texts per encoder forward pass.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        k: int = DEFAULT_K,
        temperature: float = DEFAULT_TEMPERATURE,
        prototype_temperature: float = DEFAULT_PROTOTYPE_TEMPERATURE,
        mix: float = DEFAULT_MIX,
        batch_size: int = 64,
    ) -> None:
        self.model = model
        self.k = k
        self.temperature = temperature
        self.prototype_temperature = prototype_temperature
        self.mix = mix
        self.batch_size = batch_size

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor parameters (scikit-learn convention)."""
        return {
            "model": self.model,
            "k": self.k,
            "temperature": self.temperature,
            "prototype_temperature": self.prototype_temperature,
            "mix": self.mix,
            "batch_size": self.batch_size,
        }

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> FewShotClassifier:
        """Embed the labeled examples; returns ``self``."""
        if len(texts) != len(labels):
            raise DataError(f"got {len(texts)} texts but {len(labels)} labels.")
        if len(texts) == 0:
            raise DataError("fit needs at least one labeled example.")
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}.")
        clean = [clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, start=1)]
        names = [clean_text(lab, "label", f"label {i}") for i, lab in enumerate(labels, start=1)]
        self.encoder_ = Encoder(self.model, batch_size=self.batch_size)
        self.memory_ = Memory.build(clean, names, self.encoder_.encode(clean))
        # Answer with the caller's label values (an int label stays an int), as sklearn does.
        self._label_of = dict(zip(names, labels))
        self.classes_ = np.array([self._label_of[name] for name in self.memory_.classes])
        return self

    def _stage(self) -> RetrievalStage:
        if not hasattr(self, "memory_"):
            raise ConfigError("this FewShotClassifier is not fitted yet; call fit(texts, labels).")
        vote = Vote(self.k, self.temperature, self.prototype_temperature, self.mix)
        return RetrievalStage(self.memory_, vote)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return (n, n_classes) probabilities, columns in ``classes_`` order."""
        stage = self._stage()
        scores, _ = stage.scores(self.encoder_.encode(list(texts)))
        return scores

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Return the predicted label of each text."""
        stage = self._stage()
        predictions = stage.predict(list(texts), self.encoder_.encode(list(texts)))
        return np.array([self._label_of[p.label] for p in predictions])
