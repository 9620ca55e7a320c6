"""The retrieval stage: the nearest labeled examples decide the label.

Each label's score blends two similarity-weighted votes over the same unit vectors:

* the **neighbour vote**: the ``k`` nearest examples each vote for their label with weight
  ``exp(similarity / temperature)``;
* the **prototype vote**: a softmax over the query's cosine similarity to each label's mean
  embedding (its prototype), which every example of the label shapes.

``scores = mix * neighbour_vote + (1 - mix) * prototype_vote``, normalised to sum to 1 over
every known label. The defaults were chosen by measuring on ../shared/datasets (10 datasets,
5 seeds, 8 and 64 examples per label): prototypes alone beat the best plain weighted kNN by
2 points at N=8 and 4 at N=64, and the blend keeps the neighbours' edge on topic-like data.
The figures are in ``benchmarks/RESULTS.md``.

A declared label's prior (its name, or ``name: description``) votes in both as one more
member of its label (:mod:`fewshot.stages.priors`); a label with no example yet is answered
from its prior alone.

Ties are broken deterministically: the label of the most similar neighbour among the tied
labels, then the label name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fewshot.calibration import fit_temperature, rescale, shrunk
from fewshot.stages.priors import Priors, merge
from fewshot.storage.index import VectorIndex
from fewshot.values import Neighbor, Prediction

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.1
DEFAULT_PROTOTYPE_TEMPERATURE = 0.05
DEFAULT_MIX = 0.3


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def prototypes(
    vectors: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[str],
    priors: Priors | None = None,
) -> np.ndarray:
    """Return the unit-normalised mean vector of each class, one row per entry of ``classes``.

    A class's prior, when ``priors`` has one, is one more member of its mean.
    """
    rows = []
    for name in classes:
        members = _members(vectors, labels, name, priors)
        mean = members.mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.asarray(np.stack(rows), dtype=np.float32)


def _members(
    vectors: np.ndarray, labels: Sequence[str], name: str, priors: Priors | None
) -> np.ndarray:
    """Return the vectors of class ``name``: its examples', then its prior's if it has one."""
    # compared in Python: numpy's str scalars and arrays drop a trailing NUL ("a\x00")
    mask = np.fromiter((label == name for label in labels), dtype=bool, count=len(labels))
    prior = None if priors is None else priors.vector_of(name)
    return vectors[mask] if prior is None else np.vstack([vectors[mask], prior[None, :]])


@dataclass(frozen=True)
class Vote:
    """The retrieval stage's scoring rule (see the module docstring).

    Args:
        k: Neighbours that vote (and are shown as evidence).
        temperature: Softness of the neighbour vote's weights.
        prototype_temperature: Softness of the prototype vote.
        mix: Weight of the neighbour vote; ``1 - mix`` goes to the prototype vote.
    """

    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE
    prototype_temperature: float = DEFAULT_PROTOTYPE_TEMPERATURE
    mix: float = DEFAULT_MIX
    calibration: float = 1.0  # the scores' temperature (fewshot.calibration); 1: as voted

    def scores(
        self,
        neighbor_sims: np.ndarray,
        neighbor_labels: Sequence[Sequence[str]],
        prototype_sims: np.ndarray,
        classes: Sequence[str],
    ) -> np.ndarray:
        """Return per-class scores, (n_queries, n_classes), each row summing to 1.

        Args:
            neighbor_sims: (n_queries, k) similarities of the nearest examples, descending.
            neighbor_labels: The labels of those examples.
            prototype_sims: (n_queries, n_classes) similarities to the class prototypes.
            classes: The class names, in column order.
        """
        column = {name: i for i, name in enumerate(classes)}
        n = len(neighbor_labels)
        knn = np.zeros((n, len(classes)))
        for row, (sims, labels) in enumerate(zip(neighbor_sims, neighbor_labels)):
            if len(labels) == 0:
                continue
            weights = np.exp(
                (np.asarray(sims[: len(labels)], dtype=np.float64) - sims[0]) / self.temperature
            )
            for weight, label in zip(weights, labels):
                knn[row, column[label]] += weight
        totals = knn.sum(axis=1, keepdims=True)
        knn = np.divide(knn, totals, out=np.full_like(knn, 1.0 / len(classes)), where=totals > 0)
        proto = _softmax(np.asarray(prototype_sims, dtype=np.float64) / self.prototype_temperature)
        return rescale(np.asarray(self.mix * knn + (1.0 - self.mix) * proto), self.calibration)


def pick(scores: np.ndarray, neighbor_labels: Sequence[str], classes: Sequence[str]) -> int:
    """Return the column of the winning class, breaking ties deterministically."""
    best = float(scores.max())
    tied = [i for i, s in enumerate(scores) if s >= best - 1e-12]
    if len(tied) == 1:
        return tied[0]
    rank = {label: r for r, label in reversed(list(enumerate(neighbor_labels)))}
    return min(tied, key=lambda i: (rank.get(classes[i], len(neighbor_labels)), classes[i]))


class Memory:
    """The labeled set in vector form: a FAISS index plus each example's text and label.

    Args:
        index: The vector index, keyed by example id.
        examples: ``{id: (text, label)}`` for every id in the index.
        vectors: The same vectors as the index, (n, dim), for the prototypes.
        ids: The example id of each row of ``vectors``.
        priors: The declared labels' priors (:mod:`fewshot.stages.priors`); ``labels`` and
            ``classes`` then include the labels with no example yet, ``labels`` never the
            priors themselves.
    """

    def __init__(
        self,
        index: VectorIndex,
        examples: dict[int, tuple[str, str]],
        vectors: np.ndarray,
        ids: np.ndarray,
        priors: Priors | None = None,
    ) -> None:
        self.index = index
        self.examples = examples
        self.vectors = vectors
        self.ids = ids
        self.priors = priors or Priors.empty(int(vectors.shape[1]) if vectors.ndim == 2 else 0)
        labels = [examples[int(i)][1] for i in ids]
        self.labels = labels
        self.classes: list[str] = sorted(set(labels) | set(self.priors.labels))
        self.prototypes = (
            prototypes(vectors, labels, self.classes, self.priors)
            if self.classes
            else np.zeros((0, 0))
        )
        self._temperatures: dict[Vote, float] = {}
        self._loo: dict[Vote, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def loo(self, vote: Vote) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return :func:`leave_one_out_sims` of ``vote`` on this labeled set (cached)."""
        if vote not in self._loo:
            self._loo[vote] = leave_one_out_sims(self, vote)
        return self._loo[vote]

    def temperature(self, vote: Vote) -> float:
        """Return the calibration temperature of ``vote`` on this labeled set (cached).

        Fitted on the leave-one-out answers (:func:`leave_one_out`) and shrunk towards 1
        when they are few (:mod:`fewshot.calibration`).
        """
        if vote not in self._temperatures:
            plain = Vote(vote.k, vote.temperature, vote.prototype_temperature, vote.mix)
            scores, truth, _ = self.loo(plain)
            self._temperatures[vote] = shrunk(fit_temperature(scores, truth), len(truth))
        return self._temperatures[vote]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        vectors: np.ndarray,
        priors: Priors | None = None,
    ) -> Memory:
        """Build an in-memory memory whose ids are the row numbers."""
        ids = np.arange(len(texts), dtype=np.int64)
        examples = {i: (t, lab) for i, (t, lab) in enumerate(zip(texts, labels))}
        if len(texts) == 0 and priors is not None:
            vectors = np.zeros((0, priors.vectors.shape[1]), dtype=np.float32)
        return cls(VectorIndex.build(ids, vectors), examples, vectors, ids, priors)

    def neighbors(self, vectors: np.ndarray, k: int) -> list[list[Neighbor]]:
        """Return the ``k`` nearest labeled examples of each query, most similar first."""
        sims, ids = self.index.search(vectors, k)
        return [
            [
                Neighbor(self.examples[int(i)][0], self.examples[int(i)][1], float(s), int(i))
                for s, i in zip(row_sims, row_ids)
                if i >= 0
            ]
            for row_sims, row_ids in zip(sims, ids)
        ]

    def evidence(self, vectors: np.ndarray, k: int) -> list[list[Neighbor]]:
        """Return the ``k`` nearest of the labeled examples and the priors, most similar first."""
        return merge(self.neighbors(vectors, k), self.priors.neighbors(vectors), k)


class RetrievalStage:
    """Answers from the nearest labeled examples (works from one example per label)."""

    name = "retrieval"

    def __init__(self, memory: Memory, vote: Vote | None = None) -> None:
        self.memory = memory
        self.vote = vote or Vote()

    def scores(self, vectors: np.ndarray) -> tuple[np.ndarray, list[list[Neighbor]]]:
        """Return (n, n_classes) scores in ``memory.classes`` order, and the neighbours."""
        neighbors = self.memory.evidence(vectors, self.vote.k)
        width = max((len(row) for row in neighbors), default=0)
        sims = np.zeros((len(neighbors), width))
        for r, row in enumerate(neighbors):
            sims[r, : len(row)] = [n.similarity for n in row]
        labels = [[n.label for n in row] for row in neighbors]
        proto_sims = vectors @ self.memory.prototypes.T
        return self.vote.scores(sims, labels, proto_sims, self.memory.classes), neighbors

    def predict(
        self, texts: Sequence[str], vectors: np.ndarray, explain: bool = False
    ) -> list[Prediction]:
        """Return one :class:`Prediction` per text."""
        classes = self.memory.classes
        scores, neighbors = self.scores(vectors)
        predictions = []
        for text, row, near in zip(texts, scores, neighbors):
            # FAISS orders equally similar neighbours by id; rank them by label name instead,
            # so a tie never depends on the order the examples were added in.
            ranked = sorted(near, key=lambda n: (-n.similarity, n.label))
            best = pick(row, [n.label for n in ranked], classes)
            predictions.append(
                Prediction(
                    text=text,
                    label=classes[best],
                    confidence=float(row[best]),
                    stage=self.name,
                    scores={c: float(s) for c, s in zip(classes, row)},
                    neighbors=tuple(near) if explain else None,
                )
            )
        return predictions


LOO_LIMIT = 2000  # examples scored for the calibration, at most (evenly spread)


def leave_one_out(memory: Memory, vote: Vote) -> tuple[np.ndarray, np.ndarray]:
    """Score each labeled example by the others: its neighbours and prototypes without it.

    Examples whose label has no other example are left out (nothing could answer them); of
    a larger set, :data:`LOO_LIMIT` evenly spread examples are scored.

    Returns:
        ``(scores, truth)``: (n, classes) uncalibrated scores in ``memory.classes`` order,
        and the column of each one's own label.
    """
    scores, truth, _ = leave_one_out_sims(memory, vote)
    return scores, truth


def leave_one_out_sims(memory: Memory, vote: Vote) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return :func:`leave_one_out`'s ``(scores, truth)`` and the prototype similarities.

    The third array, (n, classes), holds each scored example's cosine to every prototype,
    its own label's prototype made without it.
    """
    labels = np.asarray(memory.labels, dtype=object)  # a str array would drop trailing NULs
    column = {name: i for i, name in enumerate(memory.classes)}
    counts = Counter(memory.labels)
    rows = np.flatnonzero([counts[label] >= 2 for label in labels])
    if len(rows) > LOO_LIMIT:
        rows = rows[np.linspace(0, len(rows) - 1, LOO_LIMIT).astype(int)]
    if len(rows) == 0 or len(memory.classes) < 2:
        empty = np.zeros((0, len(memory.classes)))
        return empty, np.zeros(0, dtype=np.int64), empty
    vectors = np.asarray(memory.vectors[rows], dtype=np.float32)
    sims, ids = memory.index.search(vectors, vote.k + 1)
    neighbor_sims, neighbor_labels = [], []
    priors = memory.priors.neighbors(vectors)
    for own, row_sims, row_ids, prior in zip(memory.ids[rows], sims, ids, priors):
        kept = [
            (s, memory.examples[int(i)][1])
            for s, i in zip(row_sims, row_ids)
            if i >= 0 and i != own
        ]
        kept += [(n.similarity, n.label) for n in prior]  # the priors vote, never scored
        kept = sorted(kept, key=lambda pair: -pair[0])[: vote.k]
        neighbor_sims.append([s for s, _ in kept] + [0.0] * (vote.k - len(kept)))
        neighbor_labels.append([label for _, label in kept])
    sums = np.stack(
        [
            _members(memory.vectors, memory.labels, name, memory.priors).sum(axis=0)
            for name in memory.classes
        ]
    )
    proto_sims = vectors @ memory.prototypes.T
    truth = np.asarray([column[label] for label in labels[rows]], dtype=np.int64)
    without = sums[truth] - vectors  # each one's own prototype (its prior too), without it
    without /= np.maximum(np.linalg.norm(without, axis=1, keepdims=True), 1e-12)
    proto_sims[np.arange(len(rows)), truth] = np.einsum("ij,ij->i", vectors, without)
    plain = Vote(vote.k, vote.temperature, vote.prototype_temperature, vote.mix)
    scores = plain.scores(np.asarray(neighbor_sims), neighbor_labels, proto_sims, memory.classes)
    return scores, truth, proto_sims
