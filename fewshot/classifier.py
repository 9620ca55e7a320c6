"""An in-memory, scikit-learn estimator: the few-shot classifier (the retrieval stage, no disk).

Used by ``eval`` and the benchmarks, and handy in notebooks::

    clf = FewShotClassifier().fit(texts, labels)
    clf.predict(["where is my parcel?"])

It is a real scikit-learn classifier (``BaseEstimator`` + ``ClassifierMixin``), so ``clone``,
``set_params``, ``score``, ``cross_val_score`` and ``GridSearchCV`` work on it. Its input is a
one-dimensional sequence of texts (a list, a tuple, a 1-D NumPy array of strings, a pandas
Series), never a 2-D feature matrix.

``label_descriptions`` gives labels a prior (the name, or ``name: description``;
:mod:`fewshot.stages.priors`), as ``fewshot label-add`` does: those labels are answerable
with no example, and ``fit([], [])`` then fits on the descriptions alone::

    clf = FewShotClassifier(label_descriptions={"sports": "matches and goals", "cooking": None})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from fewshot.dataio import clean_text
from fewshot.embed import DEFAULT_MODEL, Encoder
from fewshot.errors import ConfigError, DataError
from fewshot.stages.priors import Priors, prior_text
from fewshot.stages.retrieval import (
    DEFAULT_K,
    DEFAULT_MIX,
    DEFAULT_PROTOTYPE_TEMPERATURE,
    DEFAULT_TEMPERATURE,
    Memory,
    RetrievalStage,
    Vote,
)


def _as_list(values: Any, what: str) -> list[Any]:
    """Return ``values`` (a 1-D sequence or array) as a list, or raise a :class:`DataError`."""
    if isinstance(values, (str, bytes)):
        raise DataError(f"expected a sequence of {what}s, got a single string; wrap it in a list.")
    ndim = getattr(values, "ndim", 1)  # a NumPy array, a pandas Series or DataFrame
    if ndim != 1:
        raise DataError(f"expected a one-dimensional sequence of {what}s, got {ndim} dimensions.")
    return list(values)


def _plain(value: Any) -> Any:
    """Return a NumPy scalar (``np.str_``, ``np.int64``) as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _name(label: Any, where: str) -> str:
    """Return the cleaned label name that ``label`` is stored under in the memory."""
    return clean_text(_plain(label), "label", where)


class FewShotClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Nearest-neighbour + prototype vote over sentence embeddings.

    The encoder is loaded on the first ``fit`` and cached per process, so clones (as made by
    ``GridSearchCV`` and ``cross_val_score``) share one loaded model.

    Args:
        model: Encoder name or path (default: the packaged all-MiniLM-L6-v2).
        k: Neighbours that vote.
        temperature: Softness of the neighbour vote.
        prototype_temperature: Softness of the prototype vote.
        mix: Weight of the neighbour vote against the prototype vote.
        batch_size: Texts per encoder forward pass.
        label_descriptions: ``{label: description or None}``: each of these labels gets a
            prior, and is a class even with no example.

    Attributes:
        classes_: The caller's label values, sorted; ``predict_proba`` columns follow them.
        encoder_: The :class:`~fewshot.embed.Encoder` the examples were embedded with.
        memory_: The embedded labeled examples.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        k: int = DEFAULT_K,
        temperature: float = DEFAULT_TEMPERATURE,
        prototype_temperature: float = DEFAULT_PROTOTYPE_TEMPERATURE,
        mix: float = DEFAULT_MIX,
        batch_size: int = 64,
        label_descriptions: Mapping[Any, str | None] | None = None,
    ) -> None:
        self.model = model
        self.k = k
        self.temperature = temperature
        self.prototype_temperature = prototype_temperature
        self.mix = mix
        self.batch_size = batch_size
        self.label_descriptions = label_descriptions

    def __sklearn_tags__(self) -> Any:
        """Declare the input a 1-D array-like of strings (scikit-learn >= 1.6)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def _more_tags(self) -> dict[str, Any]:
        """Declare the input strings (scikit-learn < 1.6, which reads these tags)."""
        return {"X_types": ["string"]}

    def _check_params(self) -> None:
        def is_int(value: Any) -> bool:
            return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))

        def is_real(value: Any) -> bool:
            return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))

        if not is_int(self.k) or self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k!r}.")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size!r}.")
        for name in ("temperature", "prototype_temperature"):
            value = getattr(self, name)
            if not is_real(value) or value <= 0:
                raise ConfigError(f"{name} must be a number above 0, got {value!r}.")
        if not is_real(self.mix) or not 0.0 <= self.mix <= 1.0:
            raise ConfigError(f"mix must be between 0 and 1, got {self.mix!r}.")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be an encoder name or path, got {self.model!r}.")

    def fit(
        self, texts: Sequence[str] | np.ndarray, labels: Sequence[Any] | np.ndarray
    ) -> FewShotClassifier:
        """Embed the labeled examples; returns ``self``.

        Args:
            texts: The example texts, a 1-D sequence of strings.
            labels: One label per text: strings or integers (kept as given in ``classes_``
                and in the predictions).
        """
        text_list = _as_list(texts, "text")
        label_list = _as_list(labels, "label")
        if len(text_list) != len(label_list):
            raise DataError(f"got {len(text_list)} texts but {len(label_list)} labels.")
        described = dict(self.label_descriptions or {})
        if not text_list and not described:
            raise DataError("fit needs at least one labeled example (or label_descriptions).")
        self._check_params()
        clean = [clean_text(_plain(t), "text", f"text {i}") for i, t in enumerate(text_list, 1)]
        names = [_name(lab, f"label {i}") for i, lab in enumerate(label_list, start=1)]
        if len({isinstance(_plain(lab), str) for lab in [*label_list, *described]}) > 1:
            raise DataError("the labels mix strings and integers; give labels of one type.")
        encoder = Encoder(self.model, batch_size=self.batch_size)
        priors = self._priors(encoder, described)
        vectors = encoder.encode(clean) if clean else np.zeros((0, 0), dtype=np.float32)
        memory = Memory.build(clean, names, vectors, priors)
        # Answer with the caller's label values (an int label stays an int), sorted as
        # scikit-learn sorts classes_ (np.unique: 2 before 10).
        value_of = {_name(v, "label_descriptions"): v for v in described}
        value_of.update(zip(names, label_list))
        self.classes_ = np.unique(np.asarray(list(value_of.values())))
        self.encoder_ = encoder
        self.memory_ = memory
        return self

    @staticmethod
    def _priors(encoder: Encoder, described: dict[Any, str | None]) -> Priors | None:
        """Return the priors of ``label_descriptions`` (None when it names no label)."""
        if not described:
            return None
        names = [_name(label, "label_descriptions") for label in described]
        for name, description in zip(names, described.values()):
            if description is not None and not isinstance(description, str):
                raise DataError(
                    f"label_descriptions['{name}']: expected a string or None, "
                    f"found {type(description).__name__}."
                )
        texts = [prior_text(name, d) for name, d in zip(names, described.values())]
        return Priors.make(names, texts, encoder.encode(texts))

    def _stage(self) -> tuple[RetrievalStage, list[int]]:
        """Return the fitted stage and, per entry of ``classes_``, its column in the stage."""
        if not hasattr(self, "memory_"):
            raise ConfigError("this FewShotClassifier is not fitted yet; call fit(texts, labels).")
        vote = Vote(int(self.k), self.temperature, self.prototype_temperature, self.mix)
        column = {name: i for i, name in enumerate(self.memory_.classes)}
        columns = [column[_name(value, "class")] for value in self.classes_]
        return RetrievalStage(self.memory_, vote), columns

    @staticmethod
    def _texts(texts: Sequence[str] | np.ndarray) -> list[str]:
        items = _as_list(texts, "text")
        for i, text in enumerate(items, start=1):
            if not isinstance(text, str):
                raise DataError(f"text {i}: expected a string text, found {type(text).__name__}.")
        return [str(text) for text in items]

    def predict_proba(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """Return (n, n_classes) probabilities, columns in ``classes_`` order."""
        stage, columns = self._stage()
        scores, _ = stage.scores(self.encoder_.encode(self._texts(texts)))
        return np.asarray(scores[:, columns])

    def predict(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """Return the predicted label of each text (values taken from ``classes_``)."""
        stage, columns = self._stage()
        items = self._texts(texts)
        predictions = stage.predict(items, self.encoder_.encode(items))
        position = {stage.memory.classes[c]: j for j, c in enumerate(columns)}
        return np.asarray(self.classes_[[position[p.best] for p in predictions]])
