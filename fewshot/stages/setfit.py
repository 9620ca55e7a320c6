"""The SetFit stage: a contrastively fine-tuned encoder plus a logistic-regression head.

A trained model is saved as ``body/`` (sentence-transformers, safetensors), ``head.safetensors``
(``coef``, ``intercept`` as plain float arrays) and ``head.json`` (classes, format); prediction
is numpy. A promoted model also gets ``onnx/``, the body exported for the fast path
(:mod:`fewshot.onnx_encoder`): loading uses it and imports no torch; when it is missing or
damaged, the body is loaded with torch (said once on stderr) and exported again. Nothing is
pickled and loading never unpickles. How a model is trained is :mod:`fewshot.stages.finetune`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewshot import onnx_encoder as fast_path
from fewshot.errors import WorkspaceError

HEAD_FORMAT = 1
BODY_DIR = "body"
HEAD_ARRAYS = "head.safetensors"
HEAD_JSON = "head.json"
ONNX_DIR = "onnx"


@dataclass(frozen=True)
class Head:
    """A multinomial logistic regression as plain arrays: ``softmax(x @ coef.T + intercept)``.

    ``temperature`` divides the logits (:mod:`fewshot.calibration`): the answers stay, the
    confidence is the one the gate's held-out answers support (1: as fitted).
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: tuple[str, ...]
    temperature: float = 1.0

    @classmethod
    def fit(
        cls, vectors: np.ndarray, labels: Sequence[str], random_state: int, c: float = 1.0
    ) -> Head:
        """Fit the head with scikit-learn and keep only its arrays."""
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=2000, random_state=random_state)
        model.fit(vectors, list(labels))
        # C order: sklearn's coef_ can be Fortran-ordered, and safetensors writes the bytes
        # in memory order, so a Fortran array would load back transposed.
        coef = np.ascontiguousarray(model.coef_, dtype=np.float64)
        intercept = np.ascontiguousarray(model.intercept_, dtype=np.float64)
        if len(model.classes_) == 2:  # sklearn keeps one row for two classes
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return cls(coef, intercept, tuple(str(c) for c in model.classes_))

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Return (n, n_classes) probabilities, columns in ``classes`` order."""
        logits = np.asarray(vectors, dtype=np.float64) @ self.coef.T + self.intercept
        logits /= self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def cross_validated_c(
    vectors: np.ndarray,
    labels: Sequence[str],
    random_state: int,
    grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
) -> float:
    """Return the head's ``C`` of ``grid`` with the best stratified cross-validated accuracy.

    Up to 5 folds (fewer when a label has fewer examples); 1.0 when a label has one
    example. A tie goes to the ``C`` nearest 1 (scikit-learn's default).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = min(5, min(list(labels).count(x) for x in set(labels)))
    if folds < 2:
        return 1.0
    split = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    scores = {
        c: cross_val_score(
            LogisticRegression(C=c, max_iter=2000, random_state=random_state),
            vectors, list(labels), cv=split,
        ).mean()
        for c in grid
    }  # fmt: skip
    best = max(scores.values())
    return min((c for c in grid if scores[c] == best), key=lambda c: abs(np.log(c)))


class SetFitModel:
    """A trained SetFit model: the fine-tuned encoder (``body``) and its :class:`Head`.

    Args:
        body: A SentenceTransformer.
        head: The classification head.
        batch_size: Texts per forward pass when encoding.
    """

    def __init__(self, body: Any, head: Head, batch_size: int = 64) -> None:
        self.body = body
        self.head = head
        self.batch_size = batch_size

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels the model was trained on."""
        return self.head.classes

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Encode ``texts`` with the fine-tuned encoder to unit float32 vectors."""
        return encode_body(self.body, texts, self.batch_size, progress)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return (n, n_classes) probabilities, columns in ``classes`` order."""
        return self.head.predict_proba(self.encode(texts))

    def save(self, path: Path, export: bool = False) -> None:
        """Write the model into the directory ``path`` (created; safetensors + JSON only).

        With ``export``, the body is also exported for the fast path into ``path/onnx``
        (a failure is said on stderr; the model then answers through torch).
        """
        from safetensors.numpy import save_file

        path.mkdir(parents=True, exist_ok=True)
        self.body.save(str(path / BODY_DIR), create_model_card=False, safe_serialization=True)
        if export:
            export_body(self.body, path / ONNX_DIR, "")
        arrays = {"coef": self.head.coef, "intercept": self.head.intercept}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / HEAD_ARRAYS))
        meta = {
            "format": HEAD_FORMAT,
            "classes": list(self.head.classes),
            "temperature": self.head.temperature,
        }
        (path / HEAD_JSON).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SetFitModel:
        """Load a model saved by :meth:`save` (never unpickles).

        Raises:
            WorkspaceError: If files are missing or do not fit together.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from fewshot.embed import _load, default_device

        try:
            meta = json.loads((path / HEAD_JSON).read_text(encoding="utf-8"))
            arrays = load_file(str(path / HEAD_ARRAYS))
        except (OSError, ValueError, SafetensorError) as err:
            raise WorkspaceError(
                f"{path}: the model's head is missing or unreadable ({err}); roll back to "
                "another version with `fewshot rollback` or retrain with `fewshot train --force`."
            ) from err
        temperature = meta.get("temperature", 1.0)  # a head saved before calibration: 1
        if not isinstance(temperature, (int, float)) or not 0.01 <= temperature <= 100:
            raise WorkspaceError(
                f"{path / HEAD_JSON}: expected a temperature between 0.01 and 100, found "
                f"{temperature!r}; retrain with `fewshot train --force`."
            )
        head = Head(arrays["coef"], arrays["intercept"], tuple(meta["classes"]), temperature)
        if meta.get("format") != HEAD_FORMAT or head.coef.shape[0] != len(head.classes):
            raise WorkspaceError(
                f"{path / HEAD_JSON}: expected head format {HEAD_FORMAT} with one coefficient "
                f"row per class, found format {meta.get('format')} and {head.coef.shape[0]} rows "
                f"for {len(head.classes)} classes; retrain with `fewshot train --force`."
            )
        body_dir = path / BODY_DIR
        if not (body_dir / "model.safetensors").is_file():
            raise WorkspaceError(
                f"{body_dir}: expected the encoder as model.safetensors, found none; retrain "
                "with `fewshot train --force`."
            )
        if fast_path.enabled():
            fast, why = fast_path.load_cached(path / ONNX_DIR)
            if fast is not None:
                return cls(fast, head)
        body = _load(str(body_dir.resolve()), default_device())
        if fast_path.enabled():
            export_body(body, path / ONNX_DIR, f"model {path.name}: its ONNX export is {why}")
        return cls(body, head)


def export_body(body: Any, directory: Path, why: str) -> None:
    """Export ``body`` for the fast path into ``directory``, saying ``why`` first if given.

    A read-only workspace or a failed export leaves the model on torch, said once.
    """
    from fewshot.embed import export_once

    if why and not os.access(directory.parent, os.W_OK):
        fast_path.say_once(f"{why}; answering with torch (slower; the workspace is read-only).")
        return
    export_once(body, directory, why)


def encode_body(
    body: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Encode ``texts`` with the SentenceTransformer ``body`` to unit float32 vectors."""
    from fewshot.embed import encode_with

    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return encode_with(body, texts, batch_size, progress)


__all__ = ["Head", "SetFitModel", "cross_validated_c", "encode_body", "export_body"]
