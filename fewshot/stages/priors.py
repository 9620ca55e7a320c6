"""Label priors: a declared label's name, or ``name: description``, votes beside its examples.

A label declared with ``fewshot label-add NAME [--description TEXT]`` (or
``FewShotClassifier(label_descriptions=...)``) has one **prior**: its name, or
``"name: description"`` when it has a description, embedded by the same encoder as the
examples. In the retrieval stage (:mod:`fewshot.stages.retrieval`) the prior takes part as
one more member of its label:

* in the **prototype vote** it is one more vector of the label's mean, so it weighs
  ``1 / (n + 1)`` of the prototype at ``n`` examples, and fades as examples arrive; a label
  with no example yet has its prior as its prototype;
* in the **neighbour vote** it is a candidate neighbour like an example (shown by
  ``--explain`` with ``kind: "description"``), so the more examples, the less often it is
  among the ``k`` nearest.

A label with no example is answered from its prior alone. The prior is never a labeled
example: it is not counted, never scored by the leave-one-out that sets the calibration and
the abstention threshold (it votes there as it votes for a new text) and never exported as
an example. Measured in ``benchmarks/label_priors.py``.

Training (setting ``train_label_names``, on by default) takes each trained label's name, or
``name: description``, as one more text of its label (:func:`name_examples`), never held out
and never scored; a name that is a code (``label_3``) with no description gives none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fewshot.values import Neighbor

DESCRIPTION = "description"
"""The ``kind`` of a neighbour that is a label's prior."""


def prior_text(name: str, description: str | None = None) -> str:
    """Return the text of a label's prior: ``name``, or ``"name: description"``."""
    return f"{name}: {description}" if description else name


_CODE = re.compile(r"^[\W\d_]*$|^(?:label|class|category|intent|id)[\W_]*\d+$", re.IGNORECASE)
"""A label name that says nothing about its texts: no letter, or ``label_3``, ``class-2``."""


def name_examples(
    labels: Sequence[str], descriptions: Mapping[str, str | None]
) -> list[tuple[str, str]]:
    """Return each label's name as one more training text: ``(text, label)``.

    The text is the label's prior (:func:`prior_text`: the name, or
    ``name: description`` when it was declared with one), with underscores read as spaces
    (``card_arrival``: ``card arrival``). A name that says nothing (no letter, or a code
    such as ``label_3``; see ``_CODE``) and has no description gives no text.
    """
    out = []
    for label in labels:
        description = descriptions.get(label)
        if description is None and _CODE.match(label):
            continue
        out.append((prior_text(label.replace("_", " ").strip(), description), label))
    return out


@dataclass(frozen=True)
class Priors:
    """The priors of the declared labels: one text and one unit vector each.

    Attributes:
        labels: The label of each prior (one prior per label).
        texts: The prior texts (:func:`prior_text`).
        vectors: (len(labels), dim) float32 unit vectors.
    """

    labels: tuple[str, ...]
    texts: tuple[str, ...]
    vectors: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Priors:
        """Return no priors (of vectors of dimension ``dim``)."""
        return cls((), (), np.zeros((0, dim), dtype=np.float32))

    @classmethod
    def make(cls, labels: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> Priors:
        """Return the priors of ``labels``, sorted by label."""
        order = sorted(range(len(labels)), key=lambda i: labels[i])
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(labels), -1)
        return cls(tuple(labels[i] for i in order), tuple(texts[i] for i in order), matrix[order])

    def vector_of(self, label: str) -> np.ndarray | None:
        """Return the prior vector of ``label``, or None when it has none."""
        if label not in self.labels:
            return None
        return np.asarray(self.vectors[self.labels.index(label)])

    def neighbors(self, vectors: np.ndarray) -> list[list[Neighbor]]:
        """Return every prior as a neighbour of each query, with its cosine similarity."""
        if not self.labels:
            return [[] for _ in range(len(vectors))]
        sims = np.asarray(vectors, dtype=np.float32) @ self.vectors.T
        return [
            [
                Neighbor(text, label, float(s), kind=DESCRIPTION)
                for s, text, label in zip(row, self.texts, self.labels)
            ]
            for row in sims
        ]


def merge(
    examples: Sequence[Sequence[Neighbor]], priors: Sequence[Sequence[Neighbor]], k: int
) -> list[list[Neighbor]]:
    """Return, per query, the ``k`` most similar of its example and prior neighbours.

    Examples come first among equally similar ones (the sort is stable), so with no prior the
    examples' order is kept as the index gave it.
    """
    return [
        sorted([*near, *prior], key=lambda n: -n.similarity)[:k]
        for near, prior in zip(examples, priors)
    ]


__all__ = ["DESCRIPTION", "Priors", "merge", "name_examples", "prior_text"]
