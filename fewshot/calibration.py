"""Confidence that means what it says: temperature scaling fitted on the labeled set itself.

A stage's scores ``p`` become ``p ** (1 / T)``, renormalised: the label ranking (and so the
answer) never changes, only how sure it sounds. ``T`` is the value that minimises the
negative log-likelihood of answers the workspace can check without a test set (for
retrieval, each labeled example answered by the others, leave-one-out), then shrunk towards
1 (no change) when those answers are few: ``log T`` is scaled by ``n / (n + SHRINK)``.
"""

from __future__ import annotations

import numpy as np

SHRINK = 20  # answers at which half of the fitted log-temperature is kept
GRID = np.exp(np.linspace(np.log(0.1), np.log(20.0), 121))


def rescale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Return ``proba ** (1 / temperature)``, each row renormalised to sum to 1."""
    if temperature == 1.0:
        return proba
    logs = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-300, None)) / temperature
    logs -= logs.max(axis=1, keepdims=True)
    exp = np.exp(logs)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def fit_temperature(proba: np.ndarray, truth: np.ndarray) -> float:
    """Return the temperature of :data:`GRID` with the least NLL of the ``truth`` columns.

    Args:
        proba: (n, classes) scores, rows summing to 1.
        truth: (n,) the column of each row's true label.
    """
    if len(truth) == 0:
        return 1.0
    rows = np.arange(len(truth))
    losses = [-np.log(np.clip(rescale(proba, t)[rows, truth], 1e-12, None)).mean() for t in GRID]
    return float(GRID[int(np.argmin(losses))])


def shrunk(temperature: float, n: int, shrink: int = SHRINK) -> float:
    """Return ``temperature`` pulled towards 1 for ``n`` fitting answers (log scale)."""
    return float(np.exp(np.log(temperature) * n / (n + shrink)))


__all__ = ["GRID", "SHRINK", "fit_temperature", "rescale", "shrunk"]
