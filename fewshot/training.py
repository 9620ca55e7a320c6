"""SetFit training for a workspace: when it is due, the promotion gate, versions, serving.

The gate (see :mod:`fewshot.policy`) costs no training of its own: **held out, then
continued**. One in ``gate_folds`` (default 3) of each label's examples is held out; the
candidate's encoder is trained on the rest with its share of the recipe's step budget, a
head is fitted, and the whole serving rule (model + retrieval for labels the model did not
learn) answers the held-out part, as does retrieval built from the rest. Then the same
encoder goes on training, with pairs anchored at the held-out examples, for the remaining
steps, and the head is refitted on every example: the model that is kept was trained with
exactly the budget of one training on the whole set. (Cross-validation would score every
example, but its fold models cost two trainings more; the SetFit recipe needs its pairs,
so cheaper fold models made the gate compare an under-trained candidate.) The serving stage
is scored on the same held-out examples: retrieval as above; a serving SetFit version on
those it never saw (they are held out first), when there are at least ``gate_folds`` of
them, else by retrieval's figure.

Training writes only inside the workspace: the trainer's ``output_dir`` and the new model are
made in ``models/.train-*`` and the model is renamed to ``models/<version>/`` (atomic) before
its registry row is written. An interruption (Ctrl-C, a kill) leaves the registry as it was,
so the previous model keeps serving; leftovers are removed by the next training. A lock file
(``training.lock``, an ``flock``) keeps two trainings of one workspace apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from fewshot import models as registry
from fewshot import policy
from fewshot.errors import ConfigError, WorkspaceError
from fewshot.index import VectorIndex
from fewshot.stages.retrieval import Memory, RetrievalStage
from fewshot.stages.setfit import SetFitConfig, SetFitModel, fine_tune, fresh_body, with_head
from fewshot.values import Example, Prediction

if TYPE_CHECKING:
    from fewshot.workspace import Workspace

LOCK_NAME = "training.lock"
LOG_NAME = "training.log"


@dataclass(frozen=True)
class TrainReport:
    """The outcome of one training: the version made and whether it serves."""

    version: int
    promoted: bool
    reason: str
    metrics: dict[str, Any]


@contextlib.contextmanager
def training_lock(path: Path) -> Iterator[None]:
    """Hold the workspace's training lock, or raise WorkspaceError when another holds it."""
    handle = (path / LOCK_NAME).open("a")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise WorkspaceError(
                f"{path}: a training is already under way (see `fewshot status`); "
                "wait for it to finish."
            ) from err
        yield
    finally:
        handle.close()  # closing releases the lock, also when the process is killed


def is_training(path: Path) -> bool:
    """Whether a training of the workspace at ``path`` holds the lock now."""
    if not (path / LOCK_NAME).exists():
        return False
    try:
        with training_lock(path):
            return False
    except WorkspaceError:
        return True


def config_of(settings: dict[str, Any]) -> SetFitConfig:
    """Return the training recipe from the workspace's settings."""
    return SetFitConfig(
        max_steps=int(policy.setting(settings, "max_steps")),
        pairs_per_example=int(policy.setting(settings, "pairs_per_example")),
        learning_rate=float(policy.setting(settings, "learning_rate")),
        random_state=int(policy.setting(settings, "random_state")),
    )


def _held_out(
    labels: Sequence[str], folds: int, random_state: int, first: Sequence[bool]
) -> np.ndarray:
    """Choose the gate's held-out part: one in ``folds`` of each label's examples (rounded up).

    Within a label the examples marked in ``first`` are taken before the others (the
    examples a serving model never saw, so that it can be compared on them), each group in
    a seeded random order.
    """
    rng = np.random.default_rng(random_state)
    held = np.zeros(len(labels), dtype=bool)
    label_array, preferred = np.asarray(labels), np.asarray(first, dtype=bool)
    for label in sorted(set(labels)):
        members = np.flatnonzero(label_array == label)
        members = members[rng.permutation(len(members))]
        members = np.concatenate([members[preferred[members]], members[~preferred[members]]])
        held[members[: -(-len(members) // folds)]] = True
    return held


def _answer(
    model: SetFitModel,
    texts: Sequence[str],
    retrieval: list[Prediction],
    confidence: float,
    explain_neighbors: list[Any] | None = None,
) -> list[Prediction]:
    """Apply the serving rule: the model answers, retrieval for labels the model never saw."""
    proba = model.predict_proba(texts)
    answers = []
    for i, (text, row, fallback) in enumerate(zip(texts, proba, retrieval)):
        best = int(row.argmax())
        own = Prediction(
            text=text,
            label=model.classes[best],
            confidence=float(row[best]),
            stage="setfit",
            scores={c: float(s) for c, s in zip(model.classes, row)},
            neighbors=None if explain_neighbors is None else tuple(explain_neighbors[i]),
        )
        answers.append(policy.combine(own, fallback, model.classes, confidence))
    return answers


@dataclass
class _Gate:
    """What the gate measured on its held-out part, and the steps of each training phase."""

    held_out: np.ndarray  # indices (into the examples) of the held-out part
    candidate: np.ndarray  # per held-out example: the candidate rule answered right
    retrieval: np.ndarray  # per held-out example: retrieval (on the rest) answered right
    steps: list[int]  # optimiser steps of each training phase


def _held_out_then_continue(
    ws: Workspace,
    examples: list[Example],
    trained_labels: list[str],
    unseen: set[int],
    body: Any,
    config: SetFitConfig,
    workdir: Path,
    progress: bool,
    callbacks: Sequence[Any],
) -> tuple[SetFitModel, _Gate]:
    """Train ``body`` on all but a held-out part, score that part, then continue on it.

    The budget is the recipe's for the whole set (``config.steps`` of the examples trained
    on): the first phase takes the share of the examples it trains on, the second the rest,
    with pairs anchored at the held-out examples. So the gate costs no training of its own.
    """
    import torch

    settings = ws.store.settings()
    texts = [e.text for e in examples]
    labels = [e.label for e in examples]
    ws.memory()  # embeds any example that has no stored embedding yet
    ids, matrix = ws.store.embeddings(ws.encoder.key)
    row = {int(i): r for r, i in enumerate(ids)}
    vectors = matrix[[row[e.id] for e in examples]]
    folds = int(policy.setting(settings, "gate_folds"))
    held = _held_out(labels, folds, config.random_state, [e.id in unseen for e in examples])
    test, rest = np.flatnonzero(held), np.flatnonzero(~held)
    fit = [i for i in range(len(examples)) if labels[i] in trained_labels]
    fit_rest = [i for i in fit if not held[i]]
    budget = config.steps(len(fit))
    first = (
        round(budget * len(fit_rest) / len(fit)) if len({labels[i] for i in fit_rest}) >= 2 else 0
    )
    first = min(first, budget - 1)
    memory = Memory.build([texts[i] for i in rest], [labels[i] for i in rest], vectors[rest])
    test_texts = [texts[i] for i in test]
    by_retrieval = RetrievalStage(memory).predict(test_texts, vectors[test])
    answers = by_retrieval  # a rest with fewer than two trained labels has no model to fit
    torch.manual_seed(config.random_state)
    steps = []
    if first > 0:
        rest_texts, rest_labels = [texts[i] for i in fit_rest], [labels[i] for i in fit_rest]
        fine_tune(body, rest_texts, rest_labels, config, workdir, progress, callbacks, first)
        steps.append(first)
        model = with_head(body, rest_texts, rest_labels, config.random_state)
        confidence = float(policy.setting(settings, "new_label_confidence"))
        answers = _answer(model, test_texts, by_retrieval, confidence)
    fit_texts, fit_labels = [texts[i] for i in fit], [labels[i] for i in fit]
    position = {i: k for k, i in enumerate(fit)}
    anchors = [position[i] for i in fit if held[i]] if first > 0 else None
    second = budget - first
    fine_tune(body, fit_texts, fit_labels, config, workdir, progress, callbacks, second, anchors)
    steps.append(second)
    gold = np.asarray([labels[i] for i in test])
    gate = _Gate(
        held_out=test,
        candidate=np.asarray([a.label for a in answers]) == gold,
        retrieval=np.asarray([p.label for p in by_retrieval]) == gold,
        steps=steps,
    )
    return with_head(body, fit_texts, fit_labels, config.random_state), gate


def _unseen(ws: Workspace, examples: list[Example]) -> set[int]:
    """Ids of the examples the serving model never saw, of labels it knows (none if none serves)."""
    current = registry.serving(ws.store)
    if current is None:
        return set()
    seen_up_to = int(current["metrics"].get("max_example_id", 0))
    return {e.id for e in examples if e.id > seen_up_to and e.label in current["labels"]}


def _serving_figure(
    ws: Workspace, examples: list[Example], gate: _Gate, unseen: set[int], minimum: int
) -> dict[str, Any]:
    """Accuracy of the serving stage and of the candidate on the same held-out examples.

    A serving SetFit version is scored on the held-out examples it never saw, when there are
    at least ``minimum`` of them; otherwise the candidate is compared with retrieval.
    """
    current = registry.serving(ws.store)
    mine = [k for k, i in enumerate(gate.held_out) if examples[i].id in unseen]
    if current is not None and len(mine) >= minimum:
        model = load(ws, current["version"])
        chosen = [examples[gate.held_out[k]] for k in mine]
        proba = model.predict_proba([e.text for e in chosen])
        right = np.asarray(model.classes)[proba.argmax(axis=1)] == [e.label for e in chosen]
        return {
            "baseline": f"setfit:v{current['version']}",
            "baseline_accuracy": float(right.mean()),
            "accuracy_compared": float(gate.candidate[mine].mean()),
            "compared_on": len(mine),
        }
    return {
        "baseline": "retrieval",
        "baseline_accuracy": float(gate.retrieval.mean()),
        "accuracy_compared": float(gate.candidate.mean()),
        "compared_on": len(gate.held_out),
    }


def train_now(
    ws: Workspace, force: bool = False, progress: bool = False, callbacks: Sequence[Any] = ()
) -> TrainReport | None:
    """Train a SetFit candidate when due (or when ``force``), gate it and record it.

    Args:
        ws: The workspace.
        force: Train even when no trigger fired (still needs two labels at the threshold).
        progress: Show the trainer's progress bars.
        callbacks: ``transformers.TrainerCallback`` objects passed to every training run.

    Returns:
        The report, or None when training was not due.

    Raises:
        ConfigError: If ``force`` is given but fewer than two labels reached the threshold.
        WorkspaceError: If another training of this workspace is under way.
    """
    settings = ws.store.settings()
    counts = ws.store.label_counts()
    reason = policy.training_due(counts, ws.store.models(), settings)
    trained_labels = policy.eligible(counts, int(policy.setting(settings, "min_per_label")))
    if reason is None and not force:
        return None
    if len(trained_labels) < 2:
        raise ConfigError(
            f"SetFit needs two labels with at least {policy.setting(settings, 'min_per_label')} "
            f"examples each; found {counts}. Add examples, or lower the threshold with "
            "`fewshot config min_per_label N`."
        )
    directory = registry.models_dir(ws.path)
    directory.mkdir(exist_ok=True)
    with training_lock(ws.path):
        for stale in directory.glob(".train-*"):
            shutil.rmtree(stale, ignore_errors=True)
        workdir = Path(tempfile.mkdtemp(prefix=".train-", dir=directory))
        try:
            return _train_in(ws, workdir, reason or "forced", trained_labels, progress, callbacks)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _train_in(
    ws: Workspace,
    workdir: Path,
    reason: str,
    trained_labels: list[str],
    progress: bool,
    callbacks: Sequence[Any],
) -> TrainReport:
    from fewshot.embed import resolve_model

    start = time.perf_counter()
    settings = ws.store.settings()
    config = config_of(settings)
    examples = ws.store.examples()
    body = fresh_body(resolve_model(ws.model))
    unseen = _unseen(ws, examples)
    model, gate = _held_out_then_continue(
        ws,
        examples,
        trained_labels,
        unseen,
        body,
        config,
        workdir,
        progress,
        callbacks,
    )
    folds = int(policy.setting(settings, "gate_folds"))
    figures = _serving_figure(ws, examples, gate, unseen, folds)
    promoted = policy.promote(
        figures["accuracy_compared"],
        figures["baseline_accuracy"],
        float(policy.setting(settings, "gate_margin")),
    )
    fit = [e for e in examples if e.label in trained_labels]
    version = registry.next_version(ws.store)
    staged = workdir / "model"
    model.save(staged)
    target = registry.models_dir(ws.path) / str(version)
    if target.exists():  # renamed into place by a training killed before it was recorded
        shutil.rmtree(target)
    os.replace(staged, target)
    metrics = {
        "held_out_accuracy": float(gate.candidate.mean()),
        "retrieval_held_out_accuracy": float(gate.retrieval.mean()),
        "held_out": len(gate.held_out),
        **figures,
        "folds": folds,
        "steps": sum(gate.steps),
        "phase_steps": gate.steps,
        "max_steps": config.max_steps,
        "pairs_per_example": config.pairs_per_example,
        "learning_rate": config.learning_rate,
        "train_seconds": round(time.perf_counter() - start, 3),
        "max_example_id": max(e.id for e in examples),
        "reason": reason,
    }
    registry.record(ws.store, version, trained_labels, len(fit), metrics, promoted)
    return TrainReport(version, promoted, reason, metrics)


def after_add(ws: Workspace, train: str | None, progress: bool) -> Any:
    """Train as ``train`` says when it is due after an add (see ``Workspace.add``)."""
    mode = policy.parse_setting("train", train or policy.setting(ws.store.settings(), "train"))
    if mode == "never" or is_training(ws.path) or ws.training_due() is None:
        return None
    if mode == "background":
        start_background(ws)
        return "background"
    return train_now(ws, progress=progress)


def load(ws: Workspace, version: int) -> SetFitModel:
    """Load model ``version`` of the workspace (safetensors + JSON; nothing is unpickled)."""
    return SetFitModel.load(registry.models_dir(ws.path) / str(version))


def _neighbors(
    ws: Workspace, model: SetFitModel, version: int, vectors: np.ndarray, k: int
) -> list[Any]:
    """Return the nearest labeled examples under the fine-tuned encoder (stored per version)."""
    key = f"setfit:v{version}"
    missing = ws.store.missing_embeddings(key)
    if missing:
        ws.store.put_embeddings(key, [i for i, _ in missing], model.encode([t for _, t in missing]))
    ids, matrix = ws.store.embeddings(key)
    examples = {e.id: (e.text, e.label) for e in ws.store.examples()}
    return Memory(VectorIndex.build(ids, matrix), examples, matrix, ids).neighbors(vectors, k)


def serve(
    ws: Workspace, texts: Sequence[str], retrieval: list[Prediction], k: int, explain: bool = False
) -> list[Prediction] | None:
    """Answer ``texts`` with the serving SetFit model, or return None when none serves.

    Args:
        ws: The workspace.
        texts: The cleaned texts.
        retrieval: Retrieval's predictions for them (they answer labels the model never saw).
        k: Neighbours shown as evidence with ``explain``.
        explain: Attach the nearest labeled examples under the fine-tuned encoder.
    """
    current = registry.serving(ws.store)
    if current is None:
        return None
    model = load(ws, current["version"])
    confidence = float(policy.setting(ws.store.settings(), "new_label_confidence"))
    near = None
    if explain:
        near = _neighbors(ws, model, current["version"], model.encode(texts), k)
    return _answer(model, texts, retrieval, confidence, near)


def start_background(ws: Workspace) -> subprocess.Popen[bytes] | None:
    """Start ``python -m fewshot --store DIR train`` detached; None when one runs already.

    Its output goes to ``training.log`` in the workspace; ``status`` shows ``training: true``
    once it holds the lock.
    """
    if is_training(ws.path):
        return None
    log: IO[bytes] = (ws.path / LOG_NAME).open("ab")
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "fewshot", "--store", str(ws.path), "train"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=ws.path,
        )


__all__ = [
    "TrainReport",
    "after_add",
    "is_training",
    "load",
    "serve",
    "start_background",
    "train_now",
]
