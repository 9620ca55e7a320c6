"""``fewshot status``: what a workspace holds, who answers, and what its training is doing."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from fewshot.backends.base import load, resolve
from fewshot.corpus import Corpus
from fewshot.errors import ConfigError
from fewshot.stages import scope
from fewshot.stages.retrieval import Vote
from fewshot.storage.registry import Registry
from fewshot.tasks import llm_gate, train


def status(corpus: Corpus, registry: Registry, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the workspace's state (the ``status`` contract of the README).

    ``stage`` is who answers ``classify`` now: the pinned stage (setting ``stage``), else
    the LLM when a URL is set (unless the newest training measured it and it was not better
    than the local stage: ``llm``, its figures), else a serving SetFit version whose files
    are there, else retrieval.
    """
    counts = corpus.label_counts()  # a declared label with no example yet shows 0
    serving = registry.serving()
    problem = None if serving is None else registry.problem(serving.version)
    local = "retrieval" if serving is None or problem else "setfit"
    config = resolve(None, values)
    measured = None
    if config is not None:
        with contextlib.suppress(ConfigError):  # an unknown backend: classify says so
            identity = {"endpoint": load(config).endpoint, "model": config.model}
            measured = llm_gate.decision(registry, identity)
    if values["stage"] == "setfit":  # pinned: retrieval answers while no usable model serves
        stage = local
    elif values["stage"] != "auto":
        stage = str(values["stage"])
    elif config is not None and (measured is None or measured["serves"]):
        stage = "llm"
    else:
        stage = local
    return {
        "path": str(corpus.path),
        "examples": corpus.count(),
        "labels": {name: counts.get(name, 0) for name in corpus.label_names()},
        "stage": stage,
        "threshold": int(values["min_per_label"]),
        "encoder": str(values["model"]),
        "model": None if serving is None else serving.version,
        "model_problem": problem,
        "models": [m.to_dict() for m in registry.versions()],
        "llm": None if config is None else {"measured": measured is not None, **(measured or {})},
        **train.under_way(corpus.path),  # training, training_progress
        "training_due": train.due(corpus, registry, values),
        "abstain": abstention(corpus, values),
    }


def abstention(corpus: Corpus, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return whether abstention is on, its target and, when on, the threshold it sets.

    The threshold is the retrieval stage's, set from the labeled set now (it is the same
    whoever answers); ``threshold`` None means too few examples to set one.
    """
    target = float(values["abstain_target"])
    shown: dict[str, Any] = {"on": values["abstain"] == "on", "target": target}
    if not shown["on"]:
        return shown
    fitted = None
    if corpus.count() > 0:
        fitted = scope.fit(corpus.memory(), Vote(k=int(values["k"])))
    if fitted is None:
        return {**shown, "threshold": None, "scored": 0}
    return {**shown, **fitted.to_dict(target)}


__all__ = ["status"]
