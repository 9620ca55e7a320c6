"""Who answers a text: retrieval first, then the configured LLM or the serving SetFit model.

1. The retrieval stage answers every text from its nearest labeled examples.
2. A configured LLM (``llm_url``, ``FEWSHOT_LLM_URL`` or an explicit
   :class:`~fewshot.backends.LLMSettings`) answers instead, with the same neighbours as its
   demonstrations; a failure falls back to the retrieval answer and says so. The newest
   training measured it against the local stage on the gate's held-out texts
   (:mod:`fewshot.tasks.llm_gate`): when it was not measurably better, the local stage
   answers instead (an LLM never measured, or given explicitly, answers as asked).
3. Otherwise a serving SetFit version answers, except for labels it never saw, which
   retrieval keeps (:func:`fewshot.policy.answer`). When its files are gone or damaged,
   retrieval answers, with ``fallback: "model vN unavailable"`` in each record.

Every answer then gets its in-scope score, and with the setting ``abstain`` on, a text
below the threshold is refused (:mod:`fewshot.stages.scope`): whoever answered, the score
is the retrieval stage's, over the labeled set under the base encoder.

The setting ``stage`` (or ``stage=`` here) pins who answers instead: ``retrieval``,
``setfit`` (the serving version; retrieval answers with ``fallback`` when none serves),
``setfit:vN`` (that version, serving or not: ``eval --compare``) or ``llm`` (an error when
no LLM is configured). ``auto`` is the rule above.
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
from fewshot.settings import STAGES
from fewshot.stages import scope
from fewshot.stages.llm import LLMStage, PromptPreview, configured, preview
from fewshot.stages.retrieval import RetrievalStage, Vote
from fewshot.storage.registry import Registry
from fewshot.tasks import llm_gate
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
    corpus: Corpus,
    texts: Sequence[str],
    k: int,
    explain: bool = False,
    progress: bool = False,
    calibrate: bool = False,
) -> Retrieved:
    """Answer cleaned ``texts`` with the retrieval stage over the labeled set.

    With ``calibrate``, the scores are tempered by the labeled set's own leave-one-out
    answers (:meth:`fewshot.stages.retrieval.Memory.temperature`): the same labels, a
    confidence nearer the accuracy (``benchmarks/calibration.py``).

    Raises:
        WorkspaceError: If the workspace has no labeled example and no declared label yet.
    """
    require_answerable(corpus)
    memory = corpus.memory(progress)
    vote = Vote(k=k)
    if calibrate:
        vote = Vote(k=k, calibration=memory.temperature(vote))
    stage = RetrievalStage(memory, vote)
    vectors = corpus.encoder.encode(list(texts), progress=progress)
    return Retrieved(stage, vectors, stage.predict(texts, vectors, explain=explain))


def require_answerable(corpus: Corpus) -> None:
    """Raise unless the workspace has a labeled example or a declared label to answer with."""
    if corpus.count() == 0 and not corpus.declared():
        raise WorkspaceError(
            f"{corpus.path}: no labeled examples yet; add some with `fewshot add` or "
            "`fewshot import`, or declare labels with `fewshot label-add NAME --description TEXT`."
        )


@dataclass(frozen=True)
class Ask:
    """How texts are to be answered.

    Attributes:
        k: Neighbours that vote (and are shown).
        explain: Attach the evidence (neighbours, or the demonstrations sent).
        progress: Show progress bars.
        llm: Explicit LLM settings, None for the configured ones, False for none.
        stage: Who answers (see the module docstring).
    """

    k: int
    explain: bool = False
    progress: bool = False
    llm: LLMChoice = None
    stage: str = "auto"


def classify(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    texts: Sequence[str],
    ask: Ask,
) -> list[Prediction]:
    """Classify ``texts``; one :class:`Prediction` each, in order (see the module docstring).

    Raises:
        ConfigError: If ``k`` < 1, the stage is unknown, or ``llm`` is pinned with no LLM.
    """
    if ask.k < 1:
        raise ConfigError(f"k must be at least 1, got {ask.k}.")
    cleaned = [clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, start=1)]
    calibrate = values["calibration"] != "off"
    found = retrieve(corpus, cleaned, ask.k, ask.explain, ask.progress, calibrate)
    answers = _answer(corpus, registry, values, cleaned, ask, found)
    top = np.asarray([p.confidence for p in found.predictions]) if calibrate else None
    in_scope = scope.scored(found.stage.memory, found.stage.vote, found.vectors, top)
    abstain = values.get("abstain") == "on"
    target = float(values.get("abstain_target", scope.DEFAULT_TARGET))
    return scope.judge(answers, in_scope, abstain, target)


def _answer(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    cleaned: list[str],
    ask: Ask,
    found: Retrieved,
) -> list[Prediction]:
    """Return the answers of the stage ``ask`` names, before abstention."""
    k, explain, progress, llm, stage = ask.k, ask.explain, ask.progress, ask.llm, ask.stage
    if stage == "retrieval":
        return found.predictions
    if stage in ("auto", "llm"):
        llm_stage = configured(found.stage.memory, values, llm, k)
        if llm_stage is not None and (stage == "llm" or _llm_serves(registry, llm_stage, llm)):
            return llm_stage.predict(found.vectors, found.predictions, explain, progress)
        if stage == "llm":
            raise ConfigError(
                "stage is llm but no LLM URL is set; pass --llm-url, set FEWSHOT_LLM_URL or "
                "`fewshot config llm_url URL` (or `fewshot config stage auto`)."
            )
    version = answering_version(registry, stage)
    confidence = float(values["new_label_confidence"])
    served = serve(corpus, registry, cleaned, found.predictions, k, confidence, explain, version)
    if served is None and stage != "auto":
        return [replace(p, fallback="no SetFit model serves") for p in found.predictions]
    return found.predictions if served is None else served


def _llm_serves(registry: Registry, stage: LLMStage, llm: LLMChoice) -> bool:
    """Whether the LLM answers under stage ``auto``: unless measured and not better."""
    if isinstance(llm, LLMSettings):  # given for this call: the user asked for it
        return True
    measured = llm_gate.decision(registry, stage.identity)
    return measured is None or bool(measured["serves"])


def answering_version(registry: Registry, stage: str) -> int | None:
    """Return the SetFit version ``stage`` names (``setfit:v2``), the serving one, or None."""
    if stage.startswith("setfit:v") and stage[8:].isdigit():
        return int(stage[8:])
    if stage not in ("auto", "setfit"):
        raise ConfigError(
            f"stage: expected one of {', '.join(STAGES)} or setfit:vN, found '{stage}'."
        )
    current = registry.serving()
    return None if current is None else current.version


def serve(
    corpus: Corpus,
    registry: Registry,
    texts: Sequence[str],
    retrieval: list[Prediction],
    k: int,
    confidence: float,
    explain: bool = False,
    version: int | None = None,
) -> list[Prediction] | None:
    """Answer ``texts`` with SetFit model ``version``, or return None when it is None.

    Args:
        corpus: The labeled set (evidence under the fine-tuned encoder, with ``explain``).
        registry: The model versions.
        texts: The cleaned texts.
        retrieval: Retrieval's predictions for them (they answer labels the model never saw).
        k: Neighbours shown as evidence with ``explain``.
        confidence: Retrieval confidence that answers a label the model never saw.
        explain: Attach the nearest labeled examples under the fine-tuned encoder.
        version: The version that answers (the serving one, as :func:`classify` finds it).
    """
    if version is None:
        return None
    try:
        model = registry.load_model(version)
    except (WorkspaceError, ConfigError):  # its files are gone or damaged (see `status`)
        unavailable = f"model v{version} unavailable"
        return [replace(p, fallback=unavailable) for p in retrieval]
    near = None
    if explain:
        memory = corpus.memory_under(f"setfit:v{version}", model.encode)
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


__all__ = [
    "Ask",
    "LLMChoice",
    "Retrieved",
    "answering_version",
    "classify",
    "prompt",
    "require_answerable",
    "retrieve",
    "serve",
]
