"""Confidence that means what it says: temperature scaling fitted on the labeled set itself.

A stage's scores ``p`` become ``p ** (1 / T)``, renormalised: the label ranking (and so the
answer) never changes, only how sure it sounds. ``T`` is the value that minimises the
negative log-likelihood of answers the workspace can check without a test set (for
retrieval, each labeled example answered by the others, leave-one-out), then shrunk towards
1 (no change) when those answers are few: ``log T`` is scaled by ``n / (n + SHRINK)``.

A SetFit head (logistic regression, scikit-learn's C = 1 on unit vectors) is under-confident
by nature, so its temperature is pulled towards a prior instead of towards 1
(:func:`fit_temperature_towards`): the one that fits the held-out answers best, with
``HEAD_PRIOR_WEIGHT * (log T - log HEAD_PRIOR_TEMPERATURE) ** 2`` added to their summed NLL.
With a few held-out answers the prior weighs; with many, the answers decide. The prior is
the geometric mean of the best test-set temperatures over the benchmark's seven datasets at
8 examples per label (``benchmarks/calibration_setfit.py``; left out dataset by dataset it
stays between 0.32 and 0.41, and is scored that way). A head fitted on more examples per
label is less under-confident (at 64 per label sst5's best temperature is 2.0), so the
prior fades towards 1 as they grow: :func:`head_prior` is ``0.35 ** (8 / per_label)`` above
8 per label.
"""

from __future__ import annotations

import numpy as np

SHRINK = 20  # answers at which half of the fitted log-temperature is kept
HEAD_PRIOR_TEMPERATURE = 0.35  # a SetFit head's usual temperature (see the module docstring)
PRIOR_PER_LABEL = 8  # the examples per label HEAD_PRIOR_TEMPERATURE was measured at
HEAD_PRIOR_WEIGHT = 5.0  # in held-out answers' NLL: the prior counts like a few answers
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
    return fit_temperature_towards(proba, truth, center=1.0, weight=0.0)


def head_prior(per_label: float) -> float:
    """Return the prior temperature of a head fitted on ``per_label`` examples of each label."""
    return float(HEAD_PRIOR_TEMPERATURE ** (PRIOR_PER_LABEL / max(per_label, PRIOR_PER_LABEL)))


def fit_temperature_towards(
    proba: np.ndarray,
    truth: np.ndarray,
    center: float = HEAD_PRIOR_TEMPERATURE,
    weight: float = HEAD_PRIOR_WEIGHT,
) -> float:
    """Return the temperature of :data:`GRID` that best fits ``truth`` with a prior at ``center``.

    The loss is the summed NLL of the ``truth`` columns plus ``weight * (log T - log
    center) ** 2``; with no answers it is ``center`` itself.
    """
    if len(truth) == 0:
        return float(center)
    rows = np.arange(len(truth))
    losses = [
        -np.log(np.clip(rescale(proba, t)[rows, truth], 1e-12, None)).sum()
        + weight * (np.log(t) - np.log(center)) ** 2
        for t in GRID
    ]
    return float(GRID[int(np.argmin(losses))])


def shrunk(temperature: float, n: int, shrink: int = SHRINK) -> float:
    """Return ``temperature`` pulled towards 1 for ``n`` fitting answers (log scale)."""
    return float(np.exp(np.log(temperature) * n / (n + shrink)))


__all__ = [
    "GRID",
    "HEAD_PRIOR_TEMPERATURE",
    "HEAD_PRIOR_WEIGHT",
    "SHRINK",
    "fit_temperature",
    "fit_temperature_towards",
    "head_prior",
    "rescale",
    "shrunk",
]
