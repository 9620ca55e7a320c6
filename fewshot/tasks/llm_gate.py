"""The gate's LLM measurement: a configured LLM answers the held-out texts as well.

When an LLM is configured, a training asks it the gate's held-out texts (at most
``gate_llm_max_calls``, a seeded choice when there are more; 0 never asks), each with
demonstrations retrieved from the rest of the labeled set, exactly as ``classify`` would
prompt it. Its answers are compared, text by text, with those of the local stage that serves
after the gate's verdict (the promoted candidate, else what served), and
:func:`fewshot.policy.llm_serves` decides: the LLM answers ``classify`` (stage ``auto``) only
when it is right on clearly more of the texts they disagree on; a statistical tie keeps the
local stage. A failed call is scored as the answer the user would get (retrieval's).

The figures are recorded in the version's metrics under ``llm``, with the endpoint and model
they were measured on; :func:`decision` reads them back for ``classify`` and ``status``. An
LLM that was never measured (no training since it was configured, or another endpoint or
model than the one measured) answers as configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fewshot import policy
from fewshot.errors import ConfigError
from fewshot.stages.llm import LLMStage
from fewshot.stages.retrieval import Memory, RetrievalStage
from fewshot.storage.registry import Registry
from fewshot.values import Example

StageFor = Callable[[Memory], LLMStage | None]
"""Makes the configured LLM stage over a labeled set (None when no LLM is configured)."""


def measure(
    examples: list[Example],
    vectors: np.ndarray,
    held_out: np.ndarray,
    rest: np.ndarray,
    local: tuple[str, np.ndarray],
    stage_for: StageFor,
    cap: int,
    random_state: int,
) -> dict[str, Any] | None:
    """Ask the LLM the held-out texts and compare it with the local stage on the same ones.

    Args:
        examples: Every labeled example.
        vectors: Their vectors under the packaged encoder (retrieval's view).
        held_out: Indices (into ``examples``) of the gate's held-out texts.
        rest: Indices of the others: the LLM's demonstrations come from these.
        local: The local stage's name and, per held-out text, 1.0 where it answered right,
            0.0 where wrong, NaN where it was not measured (those are not asked).
        stage_for: Makes the LLM stage over a labeled set.
        cap: At most this many texts are asked (0: none).
        random_state: Seeds the choice when there are more texts than ``cap``.

    Returns:
        The ``llm`` metrics of the version, or None when no LLM is configured or none asked.
    """
    name, right = local
    measured = np.flatnonzero(~np.isnan(right))
    if cap <= 0 or len(measured) == 0:
        return None
    memory = Memory.build(
        [examples[i].text for i in rest], [examples[i].label for i in rest], vectors[rest]
    )
    try:
        stage = stage_for(memory)
    except ConfigError as err:  # classify reports the same error; the training goes on
        return {"error": str(err)}
    if stage is None:
        return None
    if len(measured) > cap:
        rng = np.random.default_rng(random_state)
        measured = np.sort(rng.choice(measured, size=cap, replace=False))
    chosen = held_out[measured]
    texts = [examples[i].text for i in chosen]
    fallback = RetrievalStage(memory).predict(texts, vectors[chosen])
    answers = stage.predict(vectors[chosen], fallback)
    llm_right = [a.label == examples[i].label for a, i in zip(answers, chosen)]
    local_right = [bool(x) for x in right[measured]]
    verdict = policy.llm_serves(llm_right, local_right)
    return {
        **stage.identity,
        "local": name,
        "compared_on": len(chosen),
        "calls": len(chosen),
        "failed": sum(a.stage != "llm" for a in answers),
        "accuracy": float(np.mean(llm_right)),
        "local_accuracy": float(np.mean(local_right)),
        "serves": verdict.promoted,
        "reason": verdict.reason,
    }


def decision(registry: Registry, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the newest training's measurement of the LLM ``identity``, or None.

    Only the newest version counts: an older measurement was made against another local
    stage and labeled set. None when it measured no LLM, or another endpoint or model.
    """
    versions = registry.versions()
    if not versions:
        return None
    figures = versions[-1].metrics.get("llm")
    if not isinstance(figures, dict) or "serves" not in figures:
        return None
    same = all(figures.get(key) == value for key, value in identity.items())
    return figures if same else None


__all__ = ["StageFor", "decision", "measure"]
