"""Which text to label next: the query strategies of ``fewshot label`` (``--order``).

Every strategy works on unit vectors (inner product = cosine similarity) of a *pool* of
unlabeled texts and picks one pool position at a time:

* ``diverse``: greedy **facility location** over a sparse k-nearest-neighbour graph of the
  pool. Each pool text ``j`` is *covered* to the degree ``cover[j]``, its highest similarity
  to any labeled example. Labeling text ``i`` would raise the coverage of its neighbours
  ``j`` to ``sim(i, j)``; the pick is the text with the largest total gain
  ``sum_j max(0, sim(i, j) - cover[j])`` over ``j`` in ``{i} + kNN(i)``. Dense regions no
  label reaches yet win, and a region is not queried twice before the others are reached
  (the representative-and-diverse selection of vote-k, Su et al. 2023, and the coverage
  view of ProbCover, Yehuda et al. 2022, in a smooth, radius-free form).
* ``uncertain`` (the default): the same coverage gain, scaled to [0, 1] by its largest
  value among the candidates, plus the retrieval stage's **uncertainty**, ``1 - margin``
  where margin is the gap between the two highest label scores. Pure uncertainty fails
  from a cold start (it queries outliers and one confusing region over and over); the
  coverage term keeps the picks representative and spread, and while fewer than two labels
  exist there is no margin, so the pick is ``diverse``. (The sum was chosen over the
  product ``gain * (1 - margin)`` by the benchmark: equal on topic data, better on
  sentiment, where the product fell to random order.)
* ``random``: a seeded shuffle of the pool.
* ``file``: the order of the file.

The measured effect (learning curves on ../shared/datasets with a simulated annotator) is
in ``benchmarks/active_learning.py`` and its output ``benchmarks/active_learning.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fewshot.errors import ConfigError

ORDERS = ("uncertain", "diverse", "random", "file")
DEFAULT_ORDER = "uncertain"
DEFAULT_GRAPH_K = 10
_CHUNK = 1024


def margins(scores: np.ndarray) -> np.ndarray:
    """Return the gap between the two highest scores of each row (1 with fewer than 2 columns).

    Args:
        scores: (n, n_classes) label scores, each row summing to 1.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        return np.ones(len(scores))
    top = np.sort(scores, axis=1)[:, -2:]
    return np.asarray(top[:, 1] - top[:, 0], dtype=np.float64)


def knn_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's ``k`` most similar other rows: ``(indices, similarities)``, (n, k).

    Brute force in chunks (exact; memory stays at ``1024 x n`` floats).
    """
    n = len(vectors)
    k = max(0, min(k, n - 1))
    indices = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return indices, sims
    for start in range(0, n, _CHUNK):
        block = vectors[start : start + _CHUNK] @ vectors.T
        rows = np.arange(len(block))
        block[rows, rows + start] = -np.inf  # not its own neighbour
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        indices[start : start + len(block)] = top
        sims[start : start + len(block)] = np.take_along_axis(block, top, axis=1)
    return indices, sims


class Pool:
    """Unlabeled texts as vectors, and the state a query strategy needs to pick the next one.

    Args:
        vectors: (n, dim) unit vectors of the pool texts.
        order: One of :data:`ORDERS`.
        random_state: Seed of the ``random`` order (and of nothing else: the others are
            deterministic).
        k: Neighbours per text in the coverage graph.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        order: str = DEFAULT_ORDER,
        random_state: int = 0,
        k: int = DEFAULT_GRAPH_K,
    ) -> None:
        if order not in ORDERS:
            raise ConfigError(f"unknown order '{order}'; expected one of {', '.join(ORDERS)}.")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.order = order
        self.random_state = random_state
        self._rank = np.random.default_rng(random_state).permutation(len(vectors))
        self.cover = np.zeros(len(vectors), dtype=np.float32)
        if order in ("uncertain", "diverse"):
            self._graph = knn_graph(self.vectors, k)

    @property
    def needs_scores(self) -> bool:
        """Whether :meth:`pick` uses label scores (only ``uncertain`` does)."""
        return self.order == "uncertain"

    def reset_cover(self, labeled: np.ndarray) -> None:
        """Recompute the coverage from every labeled vector, (m, dim) (e.g. after an undo)."""
        self.cover = np.zeros(len(self.vectors), dtype=np.float32)
        self.add_labeled(labeled)

    def add_labeled(self, labeled: np.ndarray) -> None:
        """Raise the coverage by newly labeled vectors, (m, dim)."""
        labeled = np.asarray(labeled, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        for start in range(0, len(labeled), _CHUNK):
            sims = self.vectors @ labeled[start : start + _CHUNK].T
            self.cover = np.maximum(self.cover, sims.max(axis=1))

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """Return the coverage gain of labeling each candidate (see the module docstring)."""
        indices, sims = self._graph
        own = np.maximum(0.0, 1.0 - self.cover[candidates])
        near = np.maximum(0.0, sims[candidates] - self.cover[indices[candidates]])
        return np.asarray(own + near.sum(axis=1), dtype=np.float64)

    def pick(self, candidates: Sequence[int] | np.ndarray, scores: np.ndarray | None = None) -> int:
        """Return the pool position to label next.

        Args:
            candidates: Pool positions still open (not labeled, not skipped), non-empty.
            scores: (len(candidates), n_classes) label scores of the candidates, in the same
                order, or None when fewer than two labels exist (``uncertain`` only).
        """
        open_ = np.asarray(candidates, dtype=np.int64)
        if len(open_) == 0:
            raise ValueError("no candidates left to pick from")
        if self.order == "file":
            return int(open_.min())
        if self.order == "random":
            return int(open_[np.argmin(self._rank[open_])])
        value = self.gains(open_)
        if self.order == "uncertain" and scores is not None and scores.shape[1] >= 2:
            value = value / max(float(value.max()), 1e-12) + (1.0 - margins(scores))
        # Ties (all zero gain on a fully covered pool) fall back to file order.
        return int(open_[int(np.argmax(value))])


__all__ = ["DEFAULT_ORDER", "ORDERS", "Pool", "knn_graph", "margins"]
