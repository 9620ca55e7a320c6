"""In-batch contrastive fine-tuning: a supervised contrastive loss over label-mixed batches.

The default training objective of the SetFit stage (``loss contrastive``; the paper's
sampled pairs are ``loss pairs``, :mod:`fewshot.stages.finetune`). A batch holds many
labels and at least two examples of each (:func:`label_batches`); every text of the batch
is an anchor, every other text of its label a positive and every text of another label a
negative, so one forward pass over ``B`` texts grades ``B·(B-1)`` pairs where the pair
objective grades ``B / 2``. The loss of an anchor ``i`` (Khosla et al., 2020) is

    - mean over positives p of log( exp(s_ip / t) / sum over a != i of exp(s_ia / t) )

with ``s`` the cosine similarity of the encoder's embeddings and ``t`` the temperature.
The step budget is a number of passes over the examples (epochs), so it grows with the
labeled set, not with the number of pairs. Memory is one batch's activations plus a
``B x B`` similarity matrix: it does not grow with the number of examples or labels.

The loop is plain torch over the SentenceTransformer: AdamW, a linear warm-up over the
first tenth of the steps (the first step's rate is 0) and a linear decay, as
sentence-transformers' trainer schedules it. ``callbacks`` are called like a
``transformers.Trainer``'s: ``on_train_begin`` (``state.max_steps``), ``on_step_begin``,
``on_step_end`` (``state.global_step``), ``on_train_end``; a callback may stop the training
with ``control.should_training_stop``, and an exception it raises ends it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


def label_batches(
    labels: Sequence[str], batch_size: int, n_batches: int, random_state: int
) -> list[list[int]]:
    """Return ``n_batches`` batches of example indices, each holding many labels, >= 2 of each.

    An epoch cuts each label's examples (in a seeded order) into groups of ``per_label``
    (``batch_size`` shared among the labels, at least 2; a label's last single example
    joins its previous group) and shuffles the groups; epochs follow one another and the
    stream of groups is packed into batches of at most ``batch_size`` texts (a group larger
    than that gets a batch of its own; a batch never holds an example twice). Labels with
    one example only appear as negatives. Time and memory are linear in the number of
    examples and batches.
    """
    if not labels:
        return []
    rng = np.random.default_rng(random_state)
    label_array = np.asarray(labels)
    members = [np.flatnonzero(label_array == c) for c in sorted(set(labels))]
    per_label = max(2, batch_size // max(1, len(members)))
    out: list[list[int]] = []
    batch: list[int] = []
    while len(out) < n_batches:
        groups: list[list[int]] = []
        for group in members:
            order = [int(i) for i in group[rng.permutation(len(group))]]
            cut = [order[k : k + per_label] for k in range(0, len(order), per_label)]
            if len(cut) > 1 and len(cut[-1]) == 1:
                cut[-2].extend(cut.pop())
            groups.extend(cut)
        for g in rng.permutation(len(groups)):
            if batch and (len(batch) + len(groups[g]) > batch_size or set(batch) & set(groups[g])):
                out.append(batch)
                batch = []
            batch.extend(groups[g])
        if len(out) + 1 >= n_batches:
            out.append(batch)
            batch = []
    return out[:n_batches]


def supervised_contrastive(embeddings: Any, codes: Any, temperature: float) -> Any:
    """Return the mean supervised contrastive loss of a batch (a torch scalar).

    Args:
        embeddings: (B, d) tensor, not necessarily normalised.
        codes: (B,) integer label codes.
        temperature: Divides the cosine similarities.
    """
    import torch
    import torch.nn.functional as F

    unit = F.normalize(embeddings, dim=1)
    logits = unit @ unit.T / temperature
    self_mask = torch.eye(len(codes), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (codes[:, None] == codes[None, :]) & ~self_mask
    counts = positive.sum(dim=1)
    has = counts > 0
    if not bool(has.any()):  # no label with two examples in the batch: nothing to pull
        return (logits.masked_fill(self_mask, 0.0) * 0.0).sum()
    summed = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
    return -(summed[has] / counts[has]).mean()


def learning_rate_factor(step: int, steps: int) -> float:
    """Linear warm-up over ``ceil(steps / 10)`` steps from 0, then linear decay to 0."""
    warmup = math.ceil(0.1 * steps)
    if step < warmup:
        return step / warmup
    return max(0.0, (steps - step) / max(1, steps - warmup))


class _State:
    """What a ``transformers.TrainerCallback`` reads of a training's state."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.global_step = 0
        self.epoch = 0.0
        self.is_world_process_zero = True
        self.is_local_process_zero = True
        self.log_history: list[dict[str, float]] = []


class _Control:
    """The flags a callback may set (only ``should_training_stop`` is honoured)."""

    should_training_stop = False
    should_log = False
    should_save = False
    should_evaluate = False
    should_epoch_stop = False


class Recipe(Protocol):
    """What the loop reads of the recipe (:class:`fewshot.stages.finetune.SetFitConfig`)."""

    @property
    def texts_per_batch(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def temperature(self) -> float: ...
    @property
    def random_state(self) -> int: ...


def train_contrastive(
    body: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    steps: int,
    recipe: Recipe,
    callbacks: Sequence[Any] = (),
    losses: list[float] | None = None,
    progress: bool = False,
) -> None:
    """Fine-tune the SentenceTransformer ``body`` in place for ``steps`` contrastive steps.

    Deterministic for ``recipe.random_state`` (batches, dropout). ``losses`` gets each
    step's loss; ``callbacks`` see the steps (see the module's docstring).
    """
    import torch

    classes = {label: k for k, label in enumerate(sorted(set(labels)))}
    codes = torch.tensor([classes[label] for label in labels])
    batches = label_batches(labels, recipe.texts_per_batch, steps, recipe.random_state)
    torch.manual_seed(recipe.random_state)
    optimiser = torch.optim.AdamW(body.parameters(), lr=recipe.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: learning_rate_factor(step, steps)
    )
    state, control = _State(steps), _Control()
    callbacks = [*callbacks, _Bar()] if progress else list(callbacks)
    _call(callbacks, "on_train_begin", state, control)
    body.train()
    try:
        for batch in batches:
            _call(callbacks, "on_step_begin", state, control)
            loss = _step(body, [texts[i] for i in batch], codes[batch], recipe.temperature)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            state.global_step += 1
            if losses is not None:
                losses.append(loss)
            _call(callbacks, "on_step_end", state, control)
            if control.should_training_stop:
                break
    finally:
        body.eval()
    _call(callbacks, "on_train_end", state, control)


def _step(body: Any, texts: list[str], codes: Any, temperature: float) -> float:
    """Compute one batch's loss and its gradients (clipped to norm 1); return the loss."""
    import torch

    tokenize = getattr(body, "preprocess", None) or body.tokenize
    features = {k: v.to(body.device) if hasattr(v, "to") else v for k, v in tokenize(texts).items()}
    loss = supervised_contrastive(
        body(features)["sentence_embedding"], codes.to(body.device), temperature
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(body.parameters(), 1.0)
    return float(loss.detach())


def _call(callbacks: Sequence[Any], event: str, state: _State, control: _Control) -> None:
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(None, state, control)


class _Bar:
    """The progress bar, as a callback."""

    bar: Any = None

    def on_train_begin(self, args: Any, state: _State, control: _Control) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

        self.bar = tqdm(total=state.max_steps, desc="training", unit="step")

    def on_step_end(self, args: Any, state: _State, control: _Control) -> None:
        self.bar.update(1)

    def on_train_end(self, args: Any, state: _State, control: _Control) -> None:
        self.bar.close()


__all__ = ["label_batches", "learning_rate_factor", "supervised_contrastive", "train_contrastive"]
