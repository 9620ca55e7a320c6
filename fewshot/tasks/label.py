"""The interactive labeling loop of ``fewshot label``, independent of any terminal.

A :class:`LabelSession` holds the unlabeled texts of one file, asks for one at a time (the
query strategy of :mod:`fewshot.active` picks it), suggests a label with its evidence, and
turns each answer into a decision that is written at once:

* the label itself goes into the workspace (``source = "label:<file name>"``), and
* a row of the ``label_log`` table in the same SQLite file records it (``label`` or
  ``skip``, with the label the text had before when it was a relabel).

So a crash loses nothing that was answered, and the log survives a restart: a new session
never asks again for a labeled text, does not ask again for a skipped one (unless
``retry_skipped``), and ``u`` keeps undoing, most recent first, across earlier sessions on
the same file. Undoing a label deletes the example (or restores its previous label), and the
undone text is asked again next.

When an answer makes SetFit training due (see :mod:`fewshot.policy`), it starts in the
background (the session's ``add`` with ``train="background"``; not at all when the setting
``train`` is ``never``), so the loop goes on; the reply after the answer that sees a new
serving model says so. The order's label scores come from the retrieval stage over the
file's precomputed vectors (cheap for thousands of texts); the suggestion shown comes from
the session's ``classify`` (the workspace's), so it is the serving stage's.

Answers (:func:`parse_answer`), one line each: an empty one accepts the suggestion; a number
picks that label of the numbered list (it never becomes a label); ``s`` skips; ``u`` undoes;
``q`` quits; ``?`` shows help; anything else is a label name (new labels allowed; ``=NAME``
takes NAME literally, e.g. ``=s`` for a label called "s" or ``=3`` for one called "3").
Escape sequences (arrow keys...) and control characters are dropped from an answer first.
Numbers are stable in a session: by name at its start, then each new label the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fewshot.active import DEFAULT_ORDER, Pool
from fewshot.corpus import Corpus
from fewshot.dataio import clean_text
from fewshot.errors import DataError
from fewshot.settings import Settings
from fewshot.stages.retrieval import RetrievalStage, Vote
from fewshot.storage.label_log import LabelLog
from fewshot.storage.registry import Registry
from fewshot.tasks.train import is_training
from fewshot.values import AddResult, Prediction

HELP = (
    "Every answer is a line finished with Enter:\n"
    "Enter  accept the suggested label\n"
    "1..N   pick that label from the numbered list\n"
    "NAME   assign the label NAME (a new label is fine; =NAME takes NAME literally)\n"
    "s      skip this text (not asked again unless --retry-skipped)\n"
    "u      undo the previous decision (repeatedly; the text is asked again)\n"
    "q      quit (every answer is already saved; run again to resume)\n"
    "?      this help\n"
    "On a terminal, Tab completes a label name and Up recalls an earlier answer."
)

# CSI and SS3 sequences (arrow, function and editing keys), other ESC pairs, then any C0/C1
# control character left (a lone ESC, NUL, a tab...).
_KEY_SEQUENCE = re.compile(r"(\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1bO.|\x1b[ -~]|[\x00-\x1f\x7f-\x9f]")


def without_keys(raw: str) -> str:
    """Return ``raw`` without escape sequences (arrow keys...) and control characters."""
    return _KEY_SEQUENCE.sub("", raw)


@dataclass(frozen=True)
class Answer:
    """A parsed answer: ``kind`` is accept, pick, label, literal, skip, undo, quit or help."""

    kind: str
    value: str = ""


def parse_answer(raw: str) -> Answer:
    """Turn what the user typed into an :class:`Answer` (see the module docstring)."""
    text = without_keys(raw).strip()
    commands = {"": "accept", "s": "skip", "u": "undo", "q": "quit", "?": "help"}
    if text.lower() in commands:
        return Answer(commands[text.lower()])
    if text.isdigit():
        return Answer("pick", text)
    if text.startswith("="):
        return Answer("literal", text[1:].strip())
    return Answer("label", text)


@dataclass(frozen=True)
class Progress:
    """Where the session stands.

    Attributes:
        labeled: Texts labeled in this session (undone ones not counted).
        skipped: Texts of the file skipped (in this or an earlier session).
        remaining: Texts of the file still to ask.
        counts: ``{label: examples}`` in the whole workspace, sorted by label.
        threshold: Examples per label at which SetFit training starts.
        model: The serving model version, or None (retrieval).
        training: Whether a SetFit training is running.
    """

    labeled: int
    skipped: int
    remaining: int
    counts: dict[str, int]
    threshold: int
    model: Any
    training: bool = False

    def to_threshold(self) -> dict[str, int]:
        """Return how many more examples each label needs to reach the threshold (0: reached)."""
        return {label: max(self.threshold - n, 0) for label, n in self.counts.items()}


@dataclass(frozen=True)
class Question:
    """What the screen shows for the current text."""

    text: str
    suggestion: Prediction | None
    labels: tuple[str, ...]
    progress: Progress

    def listed(self) -> list[tuple[int, str]]:
        """Return ``(number, label)`` of the labels that have examples, by number."""
        counts = self.progress.counts
        return [(n, label) for n, label in enumerate(self.labels, start=1) if label in counts]


@dataclass(frozen=True)
class Reply:
    """The outcome of one answer: ``kind`` is labeled, skipped, undone, quit, help or invalid."""

    kind: str
    message: str
    notice: str | None = None


@dataclass(frozen=True)
class Desk:
    """What a labeling session works with.

    Attributes:
        corpus: The labeled set.
        log: The label log.
        registry: The model versions (to say when a new one serves).
        settings: The workspace's settings (``k``, ``min_per_label``, ``train``).
        classify: Answers one text as the workspace serves now (the suggestion).
        add: Labels one text: ``add(text, label, source, train)`` with relabeling allowed;
            ``train`` is ``background`` or ``never``.
    """

    corpus: Corpus
    log: LabelLog
    registry: Registry
    settings: Settings
    classify: Callable[[str], Prediction]
    add: Callable[[str, str, str, str], AddResult]


class LabelSession:
    """One labeling session over the texts of a file.

    Args:
        desk: The workspace's parts the session uses.
        texts: The unlabeled texts (duplicates are asked once).
        source: Recorded with each new example (``label:<file name>``).
        order: Query strategy, one of :data:`fewshot.active.ORDERS`.
        random_state: Seed of the ``random`` order.
        retry_skipped: Ask again for texts skipped in earlier sessions.
        progress: Show a progress bar while embedding the texts.
    """

    def __init__(
        self,
        desk: Desk,
        texts: list[str],
        source: str = "label",
        order: str = DEFAULT_ORDER,
        random_state: int = 0,
        retry_skipped: bool = False,
        progress: bool = False,
    ) -> None:
        self.desk = desk
        self.corpus = desk.corpus
        self.source = source
        self.texts = list(
            dict.fromkeys(clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, 1))
        )
        self._position = {t: i for i, t in enumerate(self.texts)}
        self._numbered: list[str] = []  # the labels by their number - 1, for the session
        self._state = self._load_state(retry_skipped)
        vectors = self.corpus.encoder.encode(self.texts, progress=progress)
        self.pool = Pool(vectors.reshape(len(self.texts), -1), order, random_state)
        self._refresh_cover()
        self.labeled_here = 0
        self._front: list[int] = []
        self._model = self._serving()
        self._question: Question | None = None

    # -- state ----------------------------------------------------------------------------

    def _serving(self) -> int | None:
        current = self.desk.registry.serving()
        return None if current is None else current.version

    def _load_state(self, retry_skipped: bool) -> np.ndarray:
        """0 open, 1 labeled, 2 skipped, per text."""
        state = np.zeros(len(self.texts), dtype=np.int8)
        stored = self.corpus.find(self.texts)
        for text in stored:
            state[self._position[text]] = 1
        if not retry_skipped:
            for text in self.desk.log.skipped():
                if text in self._position and text not in stored:
                    state[self._position[text]] = 2
        return state

    def _refresh_cover(self) -> None:
        vectors = self.corpus.vectors(self.corpus.examples())
        self.pool.reset_cover(vectors.reshape(-1, self.pool.vectors.shape[1]))

    def labels(self) -> tuple[str, ...]:
        """Return the labels by number (from 1): by name at the start, then appended as added.

        A label left with no example keeps its number unused (:meth:`Question.listed`).
        """
        known = set(self._numbered)
        self._numbered += [label for label in self.corpus.label_names() if label not in known]
        return tuple(self._numbered)

    def progress(self) -> Progress:
        """Return the session's progress."""
        return Progress(
            labeled=self.labeled_here,
            skipped=int((self._state == 2).sum()),
            remaining=int((self._state == 0).sum()),
            counts=self.corpus.label_counts(),
            threshold=int(self.desk.settings.value("min_per_label")),
            model=self._serving(),
            training=is_training(self.corpus.path),
        )

    # -- asking ---------------------------------------------------------------------------

    def current(self) -> Question | None:
        """Return the question to ask now, or None when no text is left."""
        if self._question is not None and self._state[self._position[self._question.text]] == 0:
            return self._question
        position = self._next()
        if position is None:
            return None
        text = self.texts[position]
        suggestion = self.desk.classify(text) if self.corpus.count() else None
        self._question = Question(text, suggestion, self.labels(), self.progress())
        return self._question

    def _next(self) -> int | None:
        while self._front:
            position = self._front.pop()
            if self._state[position] == 0:
                return position
        candidates = np.flatnonzero(self._state == 0)
        if len(candidates) == 0:
            return None
        scores = None
        if self.pool.needs_scores and len(self.corpus.label_counts()) >= 2:
            k = int(self.desk.settings.value("k"))
            stage = RetrievalStage(self.corpus.memory(), Vote(k=k))
            scores, _ = stage.scores(self.pool.vectors[candidates])
        return self.pool.pick(candidates, scores)

    # -- answering ------------------------------------------------------------------------

    def answer(self, raw: str) -> Reply:
        """Apply one answer to the current text and write the decision at once."""
        reply = self._apply(raw)
        notice = self._notice()
        return reply if notice is None else replace(reply, notice=notice)

    def _apply(self, raw: str) -> Reply:
        question = self.current()
        parsed = parse_answer(raw)
        if parsed.kind == "quit":
            return Reply("quit", "Quit; every answer is saved. Run the same command to resume.")
        if parsed.kind == "help":
            return Reply("help", HELP)
        if parsed.kind == "undo":
            return self.undo()
        if question is None:
            return Reply("invalid", "No text left to label.")
        if parsed.kind == "skip":
            self.desk.log.record(question.text, "skip", None, None)
            self._state[self._position[question.text]] = 2
            return Reply("skipped", "Skipped.")
        try:
            label = self._label_of(parsed, question)
        except DataError as err:
            return Reply("invalid", str(err))
        return self._assign(question.text, label)

    def _label_of(self, parsed: Answer, question: Question) -> str:
        if parsed.kind == "accept":
            if question.suggestion is None:
                raise DataError("no suggestion yet: type a label name for this text.")
            return question.suggestion.best
        if parsed.kind == "pick":
            number = int(parsed.value)
            listed = dict(question.listed())
            if number not in listed:
                numbers = ", ".join(map(str, listed)) or "none yet"
                raise DataError(
                    f"no label number {number}: the numbers are {numbers}; or type a "
                    f"name (=NAME for a label that is a number)."
                )
            return listed[number]
        label = clean_text(parsed.value, "label", "your answer")
        present = [known for _, known in question.listed()]
        same = [known for known in present if known.lower() == label.lower()]
        # "Refund" for an existing "refund" is a typo, not a new label (=Refund forces it).
        return same[0] if len(same) == 1 and parsed.kind == "label" else label

    def _assign(self, text: str, label: str) -> Reply:
        before = self.corpus.find([text]).get(text)
        is_new = label not in self.corpus.label_counts()
        result = self.desk.add(text, label, self.source, self._train_mode())
        self.desk.log.record(text, "label", label, before.label if before else None)
        self._state[self._position[text]] = 1
        self.pool.add_labeled(self.pool.vectors[self._position[text]])
        self.labeled_here += 1
        message = f"Labeled '{label}'" + (" (a new label)." if is_new else ".")
        if result.training == "background":
            message += " SetFit training started in the background; keep labeling."
        return Reply("labeled", message)

    def _train_mode(self) -> str:
        """Train in the background so the loop goes on, unless the user said never."""
        return "never" if self.desk.settings.value("train") == "never" else "background"

    def undo(self) -> Reply:
        """Undo the most recent decision on this file's texts (any session); ask it again."""
        decision = self.desk.log.last(self.texts)
        if decision is None:
            return Reply("invalid", "Nothing to undo.")
        text = decision.text
        message = "Undid the skip."
        if decision.action == "label":
            message = self._revert(text, str(decision.label), decision.previous)
            self.labeled_here = max(self.labeled_here - 1, 0)
            self._refresh_cover()
        self.desk.log.undo(decision)
        if self._question is not None:  # asked again right after the undone text
            self._front.append(self._position[self._question.text])
            self._question = None
        self._state[self._position[text]] = 0
        self._front.append(self._position[text])
        return Reply("undone", message)

    def _revert(self, text: str, label: str, previous: str | None) -> str:
        stored = self.corpus.find([text]).get(text)
        if stored is None or stored.label != label:
            return (
                f"Undid '{label}' in the history; the example had been changed since, left as is."
            )
        if previous is None:
            self.corpus.remove([text])
            return f"Undid '{label}'."
        self.desk.add(text, previous, self.source, "never")
        return f"Undid '{label}'; the text is labeled '{previous}' again."

    def _notice(self) -> str | None:
        """Say when a new model starts serving."""
        model = self._serving()
        if model == self._model:
            return None
        self._model = model
        return f"Model {model} now answers." if model is not None else "Retrieval answers again."


__all__ = [
    "HELP",
    "Answer",
    "Desk",
    "LabelSession",
    "Progress",
    "Question",
    "Reply",
    "parse_answer",
    "without_keys",
]
