"""SetFit training for a workspace: when it is due, the lock, the background process, versions.

The gate is :mod:`fewshot.tasks.gate`: it costs no training of its own.

Training writes only inside the workspace: the trainer's ``output_dir`` and the new model are
made in ``models/.train-*`` and the model is renamed to ``models/<version>/`` (atomic) before
its registry row is written. An interruption (Ctrl-C, a kill) leaves the registry as it was,
so the previous model keeps serving; leftovers are removed by the next training. A lock file
(``training.lock``, an ``flock``) keeps two trainings of one workspace apart, and
``training.start`` is locked by a background training's process from its start, so a
training is seen as under way before it holds the lock (:func:`is_training`).

A background training runs isolated: ``python -I`` (no ``PYTHON*`` variable, no user site,
no current directory on the import path) in the filesystem's root, so no file of the
workspace is ever imported or run.
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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from fewshot import policy
from fewshot.corpus import Corpus
from fewshot.errors import ConfigError, WorkspaceError
from fewshot.stages.finetune import Run, SetFitConfig, fresh_body
from fewshot.stages.llm import configured
from fewshot.stages.setfit import SetFitModel
from fewshot.storage.registry import ModelVersion, Registry
from fewshot.tasks import gate, llm_gate
from fewshot.tasks import progress as meter
from fewshot.values import Example, TrainReport

LOCK_NAME = "training.lock"
LOG_NAME = "training.log"
START_NAME = "training.start"
WAIT_POLL_SECONDS = 0.25
# The background process's program: the fewshot package of this process, found first.
_CHILD = "import sys; sys.path.insert(0, sys.argv.pop(1)); from fewshot.cli import main; main()"


@contextlib.contextmanager
def training_lock(path: Path) -> Iterator[None]:
    """Hold the workspace's training lock, or raise WorkspaceError when another holds it."""
    handle = (path / LOCK_NAME).open("a")
    try:
        deadline = time.monotonic() + 1.0  # `status` probes the lock for an instant
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"{path}: a training is already under way (see `fewshot status`); "
                        "wait for it to finish."
                    ) from err
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock, also when the process is killed


def is_training(path: Path) -> bool:
    """Whether a training of the workspace at ``path`` is under way (or starting) now."""
    return _held(path / LOCK_NAME) or _held(path / START_NAME)


def _held(file: Path) -> bool:
    try:  # opened for reading: this works in a read-only workspace too
        handle = file.open("r")
    except FileNotFoundError:
        return False
    with handle:  # closing releases the lock taken to test it
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def under_way(path: Path) -> dict[str, Any]:
    """Return ``status``'s ``training`` (a bool) and ``training_progress`` (see below)."""
    return {"training": is_training(path), "training_progress": progress_of(path)}


def progress_of(path: Path) -> dict[str, Any] | None:
    """Return the progress of the training under way (phase, step, steps...), or None."""
    if not is_training(path):
        return None
    return meter.read(path) or {"phase": "starting", "step": 0, "steps": None}


def config_of(values: Mapping[str, Any], n_labels: int) -> SetFitConfig:
    """Return the training recipe from the workspace's settings for ``n_labels`` labels."""
    return SetFitConfig(
        max_steps=int(values["max_steps"]),
        pairs_per_example=int(values["pairs_per_example"]),
        loss=policy.loss_for(str(values["loss"]), n_labels),
        epochs=float(values["epochs"]),
        learning_rate=float(values["learning_rate"] or 0.0),  # 0: the objective's default
        random_state=int(values["random_state"]),
    )


def due(corpus: Corpus, registry: Registry, values: Mapping[str, Any]) -> str | None:
    """Why SetFit should train now (the reason), or None (see :mod:`fewshot.policy`)."""
    return policy.training_due(
        corpus.label_counts(),
        registry.versions(),
        int(values["min_per_label"]),
        float(values["retrain_growth"]),
    )


def train_now(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    force: bool = False,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> TrainReport | None:
    """Train a SetFit candidate when due (or when ``force``), gate it and record it.

    Args:
        corpus: The labeled set.
        registry: The model versions.
        values: The workspace's settings' values.
        force: Train even when no trigger fired (still needs two labels at the threshold).
        progress: Show the trainer's progress bars.
        callbacks: ``transformers.TrainerCallback`` objects passed to every training run.

    Returns:
        The report, or None when training was not due.

    Raises:
        ConfigError: If ``force`` is given but fewer than two labels reached the threshold.
        WorkspaceError: If another training of this workspace is under way.
    """
    counts = corpus.label_counts()
    reason = due(corpus, registry, values)
    trained_labels = policy.eligible(counts, int(values["min_per_label"]))
    if reason is None and not force:
        return None
    if len(trained_labels) < 2:
        raise ConfigError(
            f"SetFit needs two labels with at least {values['min_per_label']} "
            f"examples each; found {counts}. Add examples, or lower the threshold with "
            "`fewshot config min_per_label N`."
        )
    directory = registry.directory
    directory.mkdir(exist_ok=True)
    config = config_of(values, len(trained_labels))
    steps = config.steps(sum(counts[label] for label in trained_labels))
    with training_lock(registry.path):
        started = time.time()
        meter.write(registry.path, "preparing", 0, steps, started)
        for stale in directory.glob(".train-*"):
            shutil.rmtree(stale, ignore_errors=True)
        workdir = Path(tempfile.mkdtemp(prefix=".train-", dir=directory))
        try:
            counter = meter.step_counter(registry.path, steps, started)
            run = Run(config, workdir, progress, [*callbacks, counter])
            return _train(corpus, registry, values, reason or "forced", trained_labels, run)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            meter.clear(registry.path)


def _train(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    reason: str,
    trained_labels: list[str],
    run: Run,
) -> TrainReport:
    from fewshot.embed import resolve_model

    start = time.perf_counter()
    examples = corpus.examples()
    serving = registry.serving()
    if serving is not None and registry.problem(serving.version) is not None:
        serving = None  # its files are gone: retrieval answers, the candidate faces it
    unseen = gate.unseen_by_serving(serving, examples, trained_labels)
    folds = int(values["gate_folds"])
    vectors = corpus.vectors(examples)
    named = values["train_label_names"] == "on"
    learned = gate.Learned.of(trained_labels, corpus.declared() if named else None)
    model, measured = gate.held_out_then_continue(
        fresh_body(resolve_model(corpus.encoder.model)),
        examples,
        vectors,
        learned,
        unseen,
        folds,
        float(values["new_label_confidence"]),
        run,
    )
    confidence = float(values["new_label_confidence"])
    figures = gate.serving_figure(
        examples, measured, unseen, serving, registry.load_model, folds, confidence
    )
    gold = [examples[i].label for i in measured.held_out]
    guard = policy.guard(measured.answers, gold, measured.losses, trained_labels)
    new = [] if serving is None else [x for x in trained_labels if x not in serving.labels]
    verdict = gate.verdict(figures, measured.candidate, float(values["gate_margin"]), new)
    if guard is not None:
        verdict = policy.Verdict(False, f"kept out by a guard: {guard}")
    version = registry.next_version()
    _save(model, registry, version, run.workdir, verdict.promoted)
    local = (f"setfit:v{version}", measured.candidate.astype(float))
    if not verdict.promoted:
        local = (figures.baseline, np.asarray(figures.right, dtype=float))
    llm = llm_gate.measure(
        examples,
        vectors,
        measured.held_out,
        measured.rest,
        local,
        lambda memory: configured(memory, values, None, int(values["k"])),
        int(values["gate_llm_max_calls"]),
        run.config.random_state,
    )
    metrics = {
        "held_out_accuracy": float(measured.candidate.mean()),
        "retrieval_held_out_accuracy": float(measured.retrieval.mean()),
        "held_out_ranking": gate.mean_defined(measured.candidate_ranking),
        "retrieval_held_out_ranking": gate.mean_defined(measured.retrieval_ranking),
        "held_out": len(measured.held_out),
        **figures.to_dict(),
        "gate": verdict.reason,
        "guard": guard,
        "llm": llm,
        "head_temperature": model.head.temperature,
        "head_temperature_fitted": list(measured.temperature),
        "loss_first": measured.losses[0] if measured.losses else None,
        "loss_last": measured.losses[-1] if measured.losses else None,
        **_recipe(run.config, folds, measured.steps),
        "label_names_trained": len(learned.names),
        "train_seconds": round(time.perf_counter() - start, 3),
        "max_example_id": max(e.id for e in examples),
        "reason": reason,
    }
    fit = _of_labels(examples, trained_labels)
    registry.record(version, trained_labels, len(fit), metrics, verdict.promoted)
    return TrainReport(version, verdict.promoted, reason, verdict.reason, figures, metrics)


def _of_labels(examples: Sequence[Example], labels: Sequence[str]) -> list[Example]:
    return [e for e in examples if e.label in labels]


def _recipe(config: SetFitConfig, folds: int, steps: list[int]) -> dict[str, Any]:
    return {
        "folds": folds,
        "steps": sum(steps),
        "phase_steps": steps,
        "max_steps": config.max_steps,
        "loss": config.loss,
        **({"pairs_per_example": config.pairs_per_example} if config.loss == "pairs" else {}),
        **({"epochs": config.epochs} if config.loss != "pairs" else {}),
        "learning_rate": config.learning_rate,
    }


def _save(
    model: SetFitModel, registry: Registry, version: int, workdir: Path, promoted: bool
) -> None:
    """Write the model to ``models/<version>/`` (staged in ``workdir``, renamed into place).

    A promoted model is exported for the fast path here, in the training's process, so the
    first ``classify`` it answers needs no torch (another version exports on first use).
    """
    staged = workdir / "model"
    model.save(staged, export=promoted)
    target = registry.directory / str(version)
    if target.exists():  # renamed into place by a training killed before it was recorded
        shutil.rmtree(target)
    os.replace(staged, target)


def after_add(
    corpus: Corpus, registry: Registry, values: Mapping[str, Any], mode: str, progress: bool
) -> TrainReport | str | None:
    """Train as ``mode`` says (``auto``, ``background``, ``never``) when it is due after an add.

    Returns:
        The report of a training run now, "background" when one was started, else None.
    """
    if mode == "never" or is_training(registry.path) or due(corpus, registry, values) is None:
        return None
    if mode == "background":
        start_background(registry.path)
        return "background"
    return train_now(corpus, registry, values, progress=progress)


def start_background(path: Path) -> subprocess.Popen[bytes] | None:
    """Start ``fewshot --store DIR train`` in a detached, isolated process; None if one runs.

    The process is ``python -I`` in the filesystem's root, so nothing of the workspace is on
    its import path; it inherits the lock of ``training.start`` and holds it while it lives,
    so ``status`` shows the training under way from the start. Its output goes to
    ``training.log`` in the workspace.
    """
    directory = path.resolve()
    if is_training(directory):
        return None
    start: IO[bytes] = (directory / START_NAME).open("ab")
    with start:  # our copy is closed; the child's keeps the lock
        try:
            fcntl.flock(start.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        meter.write(directory, "starting", 0, None, time.time())
        with (directory / LOG_NAME).open("ab") as log:
            return subprocess.Popen(
                child_command(directory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=directory.anchor,
                pass_fds=(start.fileno(),),
            )


def child_command(directory: Path) -> list[str]:
    """Return the command line of a background training of the workspace ``directory``.

    ``-I`` ignores ``PYTHON*`` variables and the user's site and puts no directory of the
    caller on the path; the package root of this very ``fewshot`` goes first instead, so the
    child runs the code its parent runs (installed, editable or on ``PYTHONPATH``).
    """
    root = Path(__file__).resolve().parents[2]
    return [sys.executable, "-I", "-c", _CHILD, str(root), "--store", str(directory), "train"]


def wait_then_train(
    corpus: Corpus,
    registry: Registry,
    values: Mapping[str, Any],
    force: bool = False,
    progress: bool = False,
) -> TrainReport | ModelVersion | None:
    """Wait for the training under way (if any); else train now if due (``fewshot train --wait``).

    Returns:
        The version the awaited training recorded, else the report of a training now, else
        None (nothing was due).
    """
    newest = registry.next_version()
    waited = False
    while is_training(registry.path):
        waited = True
        time.sleep(WAIT_POLL_SECONDS)
    made = [m for m in registry.versions() if m.version >= newest]
    if waited and made:
        return made[-1]
    return train_now(corpus, registry, values, force, progress)


__all__ = [
    "LOCK_NAME",
    "LOG_NAME",
    "START_NAME",
    "after_add",
    "child_command",
    "config_of",
    "due",
    "is_training",
    "progress_of",
    "start_background",
    "train_now",
    "training_lock",
    "under_way",
    "wait_then_train",
]
