"""SetFit training for a workspace: when it is due, the promotion gate, versions, serving.

The gate is :mod:`fewshot.gate`: it costs no training of its own.

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

from fewshot import gate, policy
from fewshot import models as registry
from fewshot.errors import ConfigError, WorkspaceError
from fewshot.index import VectorIndex
from fewshot.stages.retrieval import Memory
from fewshot.stages.setfit import SetFitConfig, SetFitModel, fresh_body
from fewshot.values import Prediction

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
    unseen = gate.unseen_by_serving(ws, examples)
    model, measured = gate.held_out_then_continue(
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
    figures = gate.serving_figure(ws, examples, measured, unseen, folds)
    verdict = gate.verdict(figures, float(policy.setting(settings, "gate_margin")))
    fit = [e for e in examples if e.label in trained_labels]
    version = registry.next_version(ws.store)
    staged = workdir / "model"
    model.save(staged)
    target = registry.models_dir(ws.path) / str(version)
    if target.exists():  # renamed into place by a training killed before it was recorded
        shutil.rmtree(target)
    os.replace(staged, target)
    metrics = {
        "held_out_accuracy": float(measured.candidate.mean()),
        "retrieval_held_out_accuracy": float(measured.retrieval.mean()),
        "held_out_ranking": gate.mean_defined(measured.candidate_ranking),
        "retrieval_held_out_ranking": gate.mean_defined(measured.retrieval_ranking),
        "held_out": len(measured.held_out),
        **figures,
        "gate": verdict.reason,
        "folds": folds,
        "steps": sum(measured.steps),
        "phase_steps": measured.steps,
        "max_steps": config.max_steps,
        "pairs_per_example": config.pairs_per_example,
        "learning_rate": config.learning_rate,
        "train_seconds": round(time.perf_counter() - start, 3),
        "max_example_id": max(e.id for e in examples),
        "reason": reason,
    }
    registry.record(ws.store, version, trained_labels, len(fit), metrics, verdict.promoted)
    return TrainReport(version, verdict.promoted, reason, metrics)


def after_add(ws: Workspace, train: str | None, progress: bool) -> Any:
    """Train as ``train`` says when it is due after an add (see ``Workspace.add``)."""
    mode = policy.parse_setting("train", train or policy.setting(ws.store.settings(), "train"))
    if mode == "never" or is_training(ws.path) or ws.training_due() is None:
        return None
    if mode == "background":
        start_background(ws)
        return "background"
    return train_now(ws, progress=progress)


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
    model = registry.load_model(ws.path, current["version"])
    confidence = float(policy.setting(ws.store.settings(), "new_label_confidence"))
    near = None
    if explain:
        near = _neighbors(ws, model, current["version"], model.encode(texts), k)
    return policy.answer(
        model.classes, model.predict_proba(texts), texts, retrieval, confidence, near
    )


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
    "serve",
    "start_background",
    "train_now",
]
