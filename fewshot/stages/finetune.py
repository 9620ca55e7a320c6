"""SetFit training: contrastive fine-tuning of the encoder, then a head fitted on it.

Two objectives (``SetFitConfig.loss``, the workspace setting ``loss``):

* ``contrastive``: a supervised contrastive loss over label-mixed batches,
  in-batch negatives, a budget of ``epochs`` passes over the examples
  (:mod:`fewshot.stages.contrastive`; measured in benchmarks/training_levers.md);
* ``pairs`` (the default: at 8 examples per label its models are about 1.8 points more
  accurate, benchmarks/RESULTS.md): the SetFit paper's algorithm run by setfit's ``Trainer``
  (CosineSimilarity loss on positive / negative text pairs), with two changes that keep it
  CPU-sane: **pairs are sampled, not enumerated** (:func:`sample_pairs` draws
  ``pairs_per_example`` pairs per example, half positive, half negative, in time linear in
  the number of examples, seeded by ``random_state``; setfit's own sampler builds all n²
  index pairs first), and **a step cap**.

Either way at most ``max_steps`` optimiser steps, then a logistic-regression head on the
fine-tuned embeddings. The model it makes is :class:`fewshot.stages.setfit.SetFitModel`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.stages.contrastive import train_contrastive
from fewshot.stages.setfit import Head, SetFitModel, encode_body

LEARNING_RATES = {"contrastive": 1e-4, "pairs": 2e-5}  # each objective's default


@dataclass(frozen=True)
class SetFitConfig:
    """How a SetFit model is trained.

    Args:
        max_steps: The step cap: at most this many optimiser steps. The default 1000 leaves
            the paper's pair budget whole up to 400 examples, the contrastive one (10 epochs
            of 32 texts a step) up to 3,200.
        pairs_per_example: Pairs drawn per labeled example before the step cap applies. The
            default 40 is the SetFit paper's ``num_iterations=20`` (20 positive + 20 negative
            pairs per example).
        batch_size: Pairs per step.
        learning_rate: The encoder's learning rate; 0 (the default) takes the objective's
            (:data:`LEARNING_RATES`: 1e-4 contrastive, the paper's 2e-5 for pairs).
        random_state: Seed of the pair sampling, the training order and the head.
        loss: ``contrastive`` (in-batch, by label) or ``pairs`` (the paper's sampled pairs).
        epochs: Passes over the examples (``contrastive``).
        texts_per_batch: Texts per step (``contrastive``).
        temperature: Of the contrastive loss's similarities.
    """

    max_steps: int = 1000
    pairs_per_example: int = 40
    batch_size: int = 16
    learning_rate: float = 0.0
    random_state: int = 0
    loss: str = "pairs"
    epochs: float = 10.0
    texts_per_batch: int = 32
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.learning_rate == 0.0:
            object.__setattr__(self, "learning_rate", LEARNING_RATES[self.loss])

    def steps(self, n_examples: int) -> int:
        """Return the number of optimiser steps for ``n_examples`` examples (at least 1)."""
        if self.loss == "pairs":
            wanted = math.ceil(self.pairs_per_example * n_examples / self.batch_size)
        else:  # passes over the examples, a batch holding at most texts_per_batch of them
            per_batch = max(1, min(self.texts_per_batch, n_examples))
            wanted = math.ceil(self.epochs * n_examples / per_batch)
        return max(1, min(self.max_steps, wanted))


def sample_pairs(
    labels: Sequence[str],
    n_pairs: int,
    random_state: int,
    anchors: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n_pairs`` example pairs, alternating positive (same label) and negative.

    Time and memory are linear in ``len(labels) + n_pairs``. A positive pair needs a label
    with two examples and a negative pair needs two labels; a kind that cannot be drawn is
    replaced by the other. With ``anchors``, every pair's first example is one of those
    indices (its partner may be any example): training continued on examples added to a
    model's training set gives their pairs to them.

    Returns:
        ``(first, second, similarity)``: example indices and 1.0 / 0.0 targets.
    """
    rng = np.random.default_rng(random_state)
    label_array = np.asarray(labels)
    classes, codes = np.unique(label_array, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(len(classes))]
    pool = np.arange(len(labels)) if anchors is None else np.asarray(anchors, dtype=np.int64)
    pos_anchors = np.asarray([i for i in pool if len(members[codes[i]]) >= 2], dtype=np.int64)
    can_neg = len(classes) >= 2
    first, second, target = [], [], []
    for p in range(n_pairs):
        positive = (p % 2 == 0 and len(pos_anchors) > 0) or not can_neg
        if positive:
            i = int(rng.choice(pos_anchors))
            group = members[codes[i]]
            shift = int(rng.integers(1, len(group)))  # any other member of the group
            j = int(group[(int(np.flatnonzero(group == i)[0]) + shift) % len(group)])
        else:
            i = int(rng.choice(pool))
            other = int(rng.integers(len(classes) - 1))
            other += other >= codes[i]
            j = int(rng.choice(members[other]))
        first.append(i)
        second.append(j)
        target.append(1.0 if positive else 0.0)
    return np.array(first, dtype=np.int64), np.array(second, dtype=np.int64), np.array(target)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from setfit import logging as setfit_logging
    from transformers.utils import logging as hf_logging

    setfit_logging.set_verbosity_warning()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Run:
    """How a fine-tuning runs: the recipe, the trainer's scratch directory, what it reports.

    Args:
        config: Steps, pairs, learning rate, seed.
        workdir: The trainer's ``output_dir`` (nothing is saved there; it must exist).
        progress: Show the trainer's progress bar.
        callbacks: ``transformers.TrainerCallback`` objects (progress, interruption).
    """

    config: SetFitConfig
    workdir: Path
    progress: bool = False
    callbacks: Sequence[Any] = ()


def fine_tune(
    body: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    run: Run,
    steps: int | None = None,
    anchors: Sequence[int] | None = None,
    losses: list[float] | None = None,
) -> None:
    """Fine-tune the SentenceTransformer ``body`` in place by the recipe's objective.

    ``loss contrastive``: :func:`fewshot.stages.contrastive.train_contrastive`; ``loss
    pairs``: setfit's Trainer on sampled pairs.

    Args:
        body: A SentenceTransformer, changed in place (a second call continues training).
        texts: The training texts.
        labels: Their labels.
        run: The recipe and how the trainer runs.
        steps: Optimiser steps; default ``run.config.steps(len(texts))``.
        anchors: Indices of the examples whose pairs are trained (see :func:`sample_pairs`);
            default all. The contrastive objective trains every example's batches and
            ignores them: each example is an anchor of every batch it is in.
        losses: If given, each step's training loss is appended to it.
    """
    _quiet_libraries()
    config = run.config
    steps = config.steps(len(texts)) if steps is None else max(1, steps)
    if config.loss != "pairs":
        train_contrastive(body, texts, labels, steps, config, run.callbacks, losses, run.progress)
        return
    first, second, target = sample_pairs(
        labels, steps * config.batch_size, config.random_state, anchors
    )
    pairs = {
        "sentence_1": [texts[i] for i in first],
        "sentence_2": [texts[j] for j in second],
        "label": target.tolist(),
    }
    trainer, args = _trainer(body, pairs, run, steps, losses)
    trainer.train_embeddings(list(texts), list(labels), args=args)


def _trainer(
    body: Any, pairs: dict[str, list[Any]], run: Run, steps: int, losses: list[float] | None
) -> tuple[Any, Any]:
    """Return setfit's Trainer for ``body``, fed ``pairs``, and its arguments."""
    from datasets import Dataset
    from setfit import SetFitModel as LibraryModel
    from setfit import TrainingArguments
    from sklearn.linear_model import LogisticRegression
    from transformers import PrinterCallback, ProgressCallback

    config = run.config
    args = TrainingArguments(
        output_dir=str(run.workdir),
        batch_size=config.batch_size,
        num_epochs=1,
        max_steps=steps,
        body_learning_rate=config.learning_rate,
        seed=config.random_state,
        report_to="none",
        save_strategy="no",
        logging_strategy="steps" if losses is not None else "no",
        logging_steps=1,
        logging_first_step=False,
        show_progress_bar=run.progress,
    )
    model = LibraryModel(model_body=body, model_head=LogisticRegression())
    trainer = _trainer_classes()[0](model=model, args=args, callbacks=list(run.callbacks))
    trainer.sampled_pairs = Dataset.from_dict(pairs)
    trainer.st_trainer.args.disable_tqdm = not run.progress
    trainer.st_trainer.args.dataloader_pin_memory = False  # CPU: pinning only warns
    trainer.st_trainer.remove_callback(PrinterCallback)
    trainer.st_trainer.remove_callback(ProgressCallback)
    if run.progress:
        trainer.st_trainer.add_callback(_trainer_classes()[1]())
    if losses is not None:
        trainer.st_trainer.add_callback(_trainer_classes()[2](losses))
    return trainer, args


@functools.cache
def _trainer_classes() -> tuple[type, type, type]:
    """Return our subclasses of setfit's Trainer and of the progress bar (made once)."""
    from setfit import Trainer
    from transformers import ProgressCallback, TrainerCallback

    class SampledPairsTrainer(Trainer):  # type: ignore[misc]
        """setfit's Trainer, fed our linear-time pairs instead of its n² enumeration."""

        sampled_pairs: Any = None

        def get_dataset(self, x: Any, y: Any, args: Any, max_pairs: int = -1) -> Any:
            return self.sampled_pairs, args.loss(self.model.model_body)

    class Bar(ProgressCallback):
        """The progress bar alone: the stock one also prints the run's summary dict."""

        def on_log(self, *args: Any, **kwargs: Any) -> None:
            return None

    class LossLog(TrainerCallback):
        """Appends each logged training loss to a list."""

        def __init__(self, losses: list[float]) -> None:
            self.losses = losses

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = kwargs.get("logs") or {}
            loss = logs.get("loss", logs.get("embedding_loss"))  # setfit >= 1.1 logs the latter
            if loss is not None:
                self.losses.append(float(loss))

    return SampledPairsTrainer, Bar, LossLog


def fresh_body(location: str) -> Any:
    """Load a new, trainable copy of the encoder at ``location`` (not the shared cached one)."""
    _quiet_libraries()
    from sentence_transformers import SentenceTransformer

    from fewshot.embed import default_device

    return SentenceTransformer(location, device=default_device())


def train_model(
    body: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    config: SetFitConfig,
    workdir: Path,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> SetFitModel:
    """Fine-tune ``body`` (a fresh SentenceTransformer, see :func:`fresh_body`) and fit a head.

    Args:
        body: The encoder to fine-tune; it is changed in place and becomes the model's.
        texts: The training texts.
        labels: Their labels (two or more distinct).
        config: The recipe.
        workdir: An existing directory for the trainer's ``output_dir``.
        progress: Show the trainer's progress bar.
        callbacks: ``transformers.TrainerCallback`` objects.
    """
    import torch

    torch.manual_seed(config.random_state)
    fine_tune(body, texts, labels, Run(config, workdir, progress, callbacks))
    return with_head(body, texts, labels, config.random_state)


def with_head(
    body: Any, texts: Sequence[str], labels: Sequence[str], random_state: int
) -> SetFitModel:
    """Return a model of the (fine-tuned) ``body`` and a head fitted on its embeddings."""
    return SetFitModel(body, Head.fit(encode_body(body, texts), labels, random_state))


__all__ = [
    "Run",
    "SetFitConfig",
    "fine_tune",
    "fresh_body",
    "sample_pairs",
    "train_model",
    "with_head",
]
