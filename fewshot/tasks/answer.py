"""Who answers a text: retrieval first, then the configured LLM or the serving SetFit model.

1. The retrieval stage answers every text from its nearest labeled examples.
2. A configured LLM (``llm_url``, ``FEWSHOT_LLM_URL`` or an explicit
   :class:`~fewshot.backends.LLMSettings`) answers instead, with the same neighbours as its
   demonstrations; a failure falls back to the retrieval answer and says so. The gate
   cannot measure an LLM without spending calls, so SetFit never takes over from it.
3. Otherwise a serving SetFit version answers, except for labels it never saw, which
   retrieval keeps (:func:`fewshot.policy.answer`). When its files are gone or damaged,
   retrieval answers, with ``fallback: "model vN unavailable"`` in each record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fewshot import policy
from fewshot.backends.base import LLMSettings
from fewshot.corpus import Corpus
from fewshot.dataio import clean_text
from fewshot.errors import ConfigError, WorkspaceError
from fewshot.stages.llm import PromptPreview, configured, preview
from fewshot.stages.retrieval import RetrievalStage, Vote
from fewshot.storage.registry import Registry
from fewshot.values import Prediction

LLMChoice = LLMSettings | bool | None
"""Explicit LLM settings (they win); None: the environment's and the workspace's; False: none."""


@dataclass(frozen=True)
class Retrieved:
    """The retrieval stage's view of some texts: the stage, their vectors, its answers."""

    stage: RetrievalStage
    vectors: np.ndarray
    predictions: list[Prediction]


def retrieve(
    corpus: Corpus, texts: Sequence[str], k: int, explain: bool = False, progress: bool = False
) -> Retrieved:
    """Answer cleaned ``texts`` with the retrieval stage over the labeled set.

    Raises:
        WorkspaceError: If the workspace has no labeled example yet.
    """
    if corpus.count() == 0:
        raise WorkspaceError(
            f"{corpus.path}: no labeled examples yet; "
            "add some with `fewshot add` or `fewshot import`."
        )
    stage = RetrievalStage(corpus.memory(progress), Vote(k=k))
    vectors = corpus.encoder.encode(list(texts), progress=progress)
    return Retrieved(stage, vectors, stage.predict(texts, vectors, explain=explain))


def classify(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    texts: Sequence[str],
    k: int,
    explain: bool = False,
    progress: bool = False,
    llm: LLMChoice = None,
) -> list[Prediction]:
    """Classify ``texts``; one :class:`Prediction` each, in order (see the module docstring)."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}.")
    cleaned = [clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, start=1)]
    found = retrieve(corpus, cleaned, k, explain, progress)
    llm_stage = configured(found.stage.memory, values, llm, k)
    if llm_stage is not None:
        return llm_stage.predict(found.vectors, found.predictions, explain, progress)
    confidence = float(values["new_label_confidence"])
    served = serve(corpus, registry, cleaned, found.predictions, k, confidence, explain)
    return found.predictions if served is None else served


def serve(
    corpus: Corpus,
    registry: Registry,
    texts: Sequence[str],
    retrieval: list[Prediction],
    k: int,
    confidence: float,
    explain: bool = False,
) -> list[Prediction] | None:
    """Answer ``texts`` with the serving SetFit model, or return None when none serves.

    Args:
        corpus: The labeled set (evidence under the fine-tuned encoder, with ``explain``).
        registry: The model versions.
        texts: The cleaned texts.
        retrieval: Retrieval's predictions for them (they answer labels the model never saw).
        k: Neighbours shown as evidence with ``explain``.
        confidence: Retrieval confidence that answers a label the model never saw.
        explain: Attach the nearest labeled examples under the fine-tuned encoder.
    """
    current = registry.serving()
    if current is None:
        return None
    try:
        model = registry.load_model(current.version)
    except (WorkspaceError, ConfigError):  # its files are gone or damaged (see `status`)
        unavailable = f"model v{current.version} unavailable"
        return [replace(p, fallback=unavailable) for p in retrieval]
    near = None
    if explain:
        memory = corpus.memory_under(current.name, model.encode)
        near = memory.neighbors(model.encode(texts), k)
    return policy.answer(
        model.classes, model.predict_proba(texts), texts, retrieval, confidence, near
    )


def prompt(
    corpus: Corpus, values: Mapping[str, Any], text: str, k: int, llm: LLMChoice = None
) -> PromptPreview:
    """Return the few-shot prompt that would be sent to the LLM for ``text`` (sends nothing)."""
    query = clean_text(text, "text", "text 1")
    if corpus.count() == 0:
        raise WorkspaceError(f"{corpus.path}: no labeled examples yet to show as demonstrations.")
    found = retrieve(corpus, [query], k)
    return preview(found.stage.memory, found.vectors, found.predictions[0], values, llm, k)


__all__ = ["LLMChoice", "Retrieved", "classify", "prompt", "retrieve", "serve"]
