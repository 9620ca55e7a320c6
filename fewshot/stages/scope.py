"""The in-scope score and the abstention threshold: "none of these" for texts no label fits.

A text's **raw score** adds two standardised measures of how well the labeled set covers it:

* its cosine similarity to the nearest label prototype (the mean embedding of a label);
* the retrieval vote's calibrated top confidence (:mod:`fewshot.calibration`).

Each is standardised by its mean and spread over the labeled examples scored leave-one-out
(each one by the others, as if unseen: :func:`fewshot.stages.retrieval.leave_one_out`).
Measured on an open-set protocol (``benchmarks/open_set.py``: trec6, emotion, ag_news and
hwu64 with a quarter of their labels held back), this sum separated unknown texts from known
ones better than either part alone or the maximum cosine to the labeled set (the figures are
in ``benchmarks/RESULTS.md``).

A text's **in-scope score** (``in_scope``, 0 to 1) is the share of those leave-one-out
scores strictly below its raw score: 0.3 means 30% of the labeled examples, answered as if
unseen, looked less in scope. With abstention on, a text whose in-scope score is below
``abstain_target`` (default 0.05) is refused: about that share of texts like the labeled
ones is refused, and whatever looks less covered than the least covered examples is. In raw
terms, a text is refused when its raw score is at or below :attr:`Scope.threshold`.

The scope is fitted on the labeled set in the encoder space of the retrieval stage and is
cached on the :class:`~fewshot.stages.retrieval.Memory` object, which the corpus rebuilds
whenever the labeled set changes: it is never stale.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fewshot.calibration import rescale
from fewshot.stages.retrieval import Memory, RetrievalStage, Vote
from fewshot.values import Prediction

DEFAULT_TARGET = 0.05
NONE_OF_THESE = "none of these"
MIN_SCORED = 4  # labeled examples scored leave-one-out below which no threshold is set

_CACHE: weakref.WeakKeyDictionary[Memory, dict[Vote, Scope | None]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Scope:
    """What the labeled set says an in-scope text looks like.

    Attributes:
        loo: The raw scores of the labeled examples scored leave-one-out, sorted.
        mean: The mean of each part (prototype similarity, confidence) over them.
        spread: The standard deviation of each part (1 where it is 0).
        temperature: The calibration temperature of the confidence part.
    """

    loo: np.ndarray
    mean: tuple[float, float]
    spread: tuple[float, float]
    temperature: float

    @property
    def scored(self) -> int:
        """How many labeled examples the threshold was set from."""
        return len(self.loo)

    def raw(self, parts: np.ndarray) -> np.ndarray:
        """Return the raw scores of (n, 2) parts (prototype similarity, confidence)."""
        mean = np.asarray(self.mean)
        spread = np.asarray(self.spread)
        return np.asarray(((parts - mean) / spread).sum(axis=1))

    def in_scope(self, raw: np.ndarray) -> np.ndarray:
        """Return each raw score's in-scope score: the share of ``loo`` strictly below it."""
        return np.searchsorted(self.loo, raw, side="left") / len(self.loo)

    def threshold(self, target: float) -> float:
        """Return the raw score at or below which a text is refused for ``target``."""
        m = max(1, math.ceil(target * len(self.loo) - 1e-9))
        return float(self.loo[min(m, len(self.loo)) - 1])

    def to_dict(self, target: float) -> dict[str, Any]:
        """Return what ``status`` shows of the scope for ``target``."""
        return {"threshold": round(self.threshold(target), 6), "scored": self.scored}


def parts(
    memory: Memory,
    vote: Vote,
    vectors: np.ndarray,
    temperature: float,
    confidence: np.ndarray | None = None,
) -> np.ndarray:
    """Return (n, 2): each query's nearest-prototype similarity and calibrated confidence.

    ``confidence``: the calibrated top scores when the caller has them (no second vote).
    """
    if confidence is None:
        stage = RetrievalStage(memory, replace(vote, calibration=temperature))
        confidence = stage.scores(vectors)[0].max(axis=1)
    proto = (vectors @ memory.prototypes.T).max(axis=1)
    return np.stack([proto, np.asarray(confidence, dtype=np.float64)], axis=1)


def _loo_parts(memory: Memory, vote: Vote, temperature: float) -> np.ndarray:
    """Return the same parts for the labeled examples, each scored without itself."""
    plain = Vote(vote.k, vote.temperature, vote.prototype_temperature, vote.mix)
    scores, truth, proto = memory.loo(plain)
    if len(truth) == 0:
        return np.zeros((0, 2))
    confidence = rescale(scores, temperature).max(axis=1)
    return np.stack([proto.max(axis=1), confidence], axis=1)


def fit(memory: Memory, vote: Vote) -> Scope | None:
    """Return the scope of ``memory`` (cached on it), or None when too few examples score.

    Needs two labels and :data:`MIN_SCORED` examples whose label has another example.
    """
    cached = _CACHE.setdefault(memory, {})
    key = replace(vote, calibration=1.0)
    if key not in cached:
        cached[key] = _fit(memory, key)
    return cached[key]


def _fit(memory: Memory, vote: Vote) -> Scope | None:
    temperature = memory.temperature(vote)
    loo = _loo_parts(memory, vote, temperature)
    if len(loo) < MIN_SCORED:
        return None
    mean = loo.mean(axis=0)
    spread = loo.std(axis=0)
    spread = np.where(spread > 1e-9, spread, 1.0)
    scope = Scope(
        np.zeros(0),
        (float(mean[0]), float(mean[1])),
        (float(spread[0]), float(spread[1])),
        temperature,
    )
    return replace(scope, loo=np.sort(scope.raw(loo)))


def scored(
    memory: Memory, vote: Vote, vectors: np.ndarray, confidence: np.ndarray | None = None
) -> np.ndarray | None:
    """Return the in-scope score of each query, or None when no scope can be fitted.

    ``confidence``: the queries' top scores under the calibrated ``vote``, if known.
    """
    scope = fit(memory, vote)
    if scope is None:
        return None
    measured = parts(memory, vote, vectors, scope.temperature, confidence)
    return scope.in_scope(scope.raw(measured))


def judge(
    predictions: list[Prediction], in_scope: np.ndarray | None, abstain: bool, target: float
) -> list[Prediction]:
    """Attach each answer's in-scope score and, with ``abstain``, refuse those below ``target``.

    A refused answer keeps its scores and confidence; its label becomes None, ``abstained``
    True and ``best_label`` the label it would have given. An answer already refused (the
    LLM said "none of these") stays refused. Without a scope (``in_scope`` None: too few
    labeled examples), nothing is refused by the score.
    """
    judged = []
    for i, prediction in enumerate(predictions):
        score = None if in_scope is None else float(in_scope[i])
        refused = prediction.abstained is True or (abstain and score is not None and score < target)
        if refused:
            best = prediction.best_label or prediction.label
            prediction = replace(prediction, label=None, abstained=True, best_label=best)
        elif abstain:
            prediction = replace(prediction, abstained=False)
        judged.append(replace(prediction, in_scope=score))
    return judged


__all__ = ["DEFAULT_TARGET", "NONE_OF_THESE", "Scope", "fit", "judge", "parts", "scored"]
