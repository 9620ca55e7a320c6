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
background (``Workspace.add(train="background")``; not at all when the setting ``train`` is
``never``), so the loop goes on; the reply after the answer that sees a new serving model
says so. The order's label scores come from the retrieval stage over the file's
precomputed vectors (cheap for thousands of texts); the suggestion shown comes from
``Workspace.classify``, so it is the serving stage's.

Answers (:func:`parse_answer`): Enter accepts the suggestion; a number picks that label of
the numbered list (it never becomes a label); ``s`` skips; ``u`` undoes; ``q`` quits; ``?``
shows help; anything else is a label name (new labels allowed; ``=NAME`` takes NAME
literally, e.g. ``=s`` for a label called "s" or ``=3`` for one called "3").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fewshot.active import DEFAULT_ORDER, Pool
from fewshot.dataio import clean_text
from fewshot.errors import DataError
from fewshot.stages.retrieval import DEFAULT_K, RetrievalStage, Vote
from fewshot.values import Prediction

if TYPE_CHECKING:
    from fewshot.workspace import Workspace

_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_log (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    previous TEXT,
    created_at REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
)
"""

HELP = (
    "Enter  accept the suggested label\n"
    "1..N   pick that label from the numbered list\n"
    "NAME   assign the label NAME (a new label is fine; =NAME takes NAME literally)\n"
    "s      skip this text (not asked again unless --retry-skipped)\n"
    "u      undo the previous decision (repeatedly; the text is asked again)\n"
    "q      quit (every answer is already saved; run again to resume)\n"
    "?      this help"
)


@dataclass(frozen=True)
class Answer:
    """A parsed answer: ``kind`` is accept, pick, label, literal, skip, undo, quit or help."""

    kind: str
    value: str = ""


def parse_answer(raw: str) -> Answer:
    """Turn what the user typed into an :class:`Answer` (see the module docstring)."""
    text = raw.strip()
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


@dataclass(frozen=True)
class Reply:
    """The outcome of one answer: ``kind`` is labeled, skipped, undone, quit, help or invalid."""

    kind: str
    message: str
    notice: str | None = None


class LabelSession:
    """One labeling session over the texts of a file.

    Args:
        workspace: The workspace that receives the labels.
        texts: The unlabeled texts (duplicates are asked once).
        source: Recorded with each new example (``label:<file name>``).
        order: Query strategy, one of :data:`fewshot.active.ORDERS`.
        random_state: Seed of the ``random`` order.
        retry_skipped: Ask again for texts skipped in earlier sessions.
        progress: Show a progress bar while embedding the texts.
    """

    def __init__(
        self,
        workspace: Workspace,
        texts: list[str],
        source: str = "label",
        order: str = DEFAULT_ORDER,
        random_state: int = 0,
        retry_skipped: bool = False,
        progress: bool = False,
    ) -> None:
        self.workspace = workspace
        self.source = source
        self.texts = list(
            dict.fromkeys(clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, 1))
        )
        self._position = {t: i for i, t in enumerate(self.texts)}
        with workspace.store.transaction() as conn:
            conn.execute(_LOG_SCHEMA)
        self._state = self._load_state(retry_skipped)
        vectors = workspace.encoder.encode(self.texts, progress=progress)
        self.pool = Pool(vectors.reshape(len(self.texts), -1), order, random_state)
        self._refresh_cover()
        self.labeled_here = 0
        self._front: list[int] = []
        self._model = workspace.status()["model"]
        self._question: Question | None = None

    # -- state ----------------------------------------------------------------------------

    def _load_state(self, retry_skipped: bool) -> np.ndarray:
        """0 open, 1 labeled, 2 skipped, per text."""
        state = np.zeros(len(self.texts), dtype=np.int8)
        stored = self.workspace.store.find_texts(self.texts)
        for text in stored:
            state[self._position[text]] = 1
        if not retry_skipped:
            for (text,) in self._query(
                "SELECT text FROM label_log WHERE action = 'skip' AND undone = 0"
            ):
                if text in self._position and text not in stored:
                    state[self._position[text]] = 2
        return state

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.workspace.store.transaction() as conn:
            return list(conn.execute(sql, params).fetchall())

    def _refresh_cover(self) -> None:
        self.workspace.memory()  # embeds any example that has no vector yet
        _, vectors = self.workspace.store.embeddings(self.workspace.encoder.key)
        self.pool.reset_cover(vectors.reshape(-1, self.pool.vectors.shape[1]))

    def labels(self) -> tuple[str, ...]:
        """Return the workspace's labels in the order they are numbered (by name, from 1)."""
        return tuple(self.workspace.store.label_counts())

    def progress(self) -> Progress:
        """Return the session's progress."""
        status = self.workspace.status()
        return Progress(
            labeled=self.labeled_here,
            skipped=int((self._state == 2).sum()),
            remaining=int((self._state == 0).sum()),
            counts=status["labels"],
            threshold=status["threshold"],
            model=status["model"],
            training=bool(status.get("training")),
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
        suggestion = None
        if self.workspace.store.count():
            suggestion = self.workspace.classify([text], explain=True)[0]
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
        if self.pool.needs_scores and len(self.labels()) >= 2:
            k = int(self.workspace.store.get_setting("k", DEFAULT_K))
            stage = RetrievalStage(self.workspace.memory(), Vote(k=k))
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
            self._log(question.text, "skip", None, None)
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
            return question.suggestion.label
        if parsed.kind == "pick":
            number = int(parsed.value)
            if not 1 <= number <= len(question.labels):
                raise DataError(
                    f"no label number {number}: pick 1..{len(question.labels)}, or type a "
                    f"name (=NAME for a label that is a number)."
                )
            return question.labels[number - 1]
        label = clean_text(parsed.value, "label", "your answer")
        same = [known for known in question.labels if known.lower() == label.lower()]
        # "Refund" for an existing "refund" is a typo, not a new label (=Refund forces it).
        return same[0] if len(same) == 1 and parsed.kind == "label" else label

    def _assign(self, text: str, label: str) -> Reply:
        before = self.workspace.store.find_texts([text]).get(text)
        is_new = label not in self.workspace.store.label_counts()
        result = self.workspace.add(
            [text], label, source=self.source, relabel=True, train=self._train_mode()
        )
        self._log(text, "label", label, before.label if before else None)
        self._state[self._position[text]] = 1
        self.pool.add_labeled(self.pool.vectors[self._position[text]])
        self.labeled_here += 1
        message = f"Labeled '{label}'" + (" (a new label)." if is_new else ".")
        if result.training == "background":
            message += " SetFit training started in the background; keep labeling."
        return Reply("labeled", message)

    def _train_mode(self) -> str:
        """Train in the background so the loop goes on, unless the user said never."""
        from fewshot.policy import setting

        never = setting(self.workspace.store.settings(), "train") == "never"
        return "never" if never else "background"

    def undo(self) -> Reply:
        """Undo the most recent decision on this file's texts (any session); ask it again."""
        marks = ",".join("?" * len(self.texts)) or "NULL"
        rows = self._query(
            "SELECT id, text, action, label, previous FROM label_log WHERE undone = 0 "
            f"AND text IN ({marks}) ORDER BY id DESC LIMIT 1",
            self.texts,
        )
        if not rows:
            return Reply("invalid", "Nothing to undo.")
        log_id, text, action, label, previous = rows[0]
        message = "Undid the skip."
        if action == "label":
            message = self._revert(text, label, previous)
            self.labeled_here = max(self.labeled_here - 1, 0)
            self._refresh_cover()
        with self.workspace.store.transaction() as conn:
            conn.execute("UPDATE label_log SET undone = 1 WHERE id = ?", (log_id,))
        if self._question is not None:  # asked again right after the undone text
            self._front.append(self._position[self._question.text])
            self._question = None
        self._state[self._position[text]] = 0
        self._front.append(self._position[text])
        return Reply("undone", message)

    def _revert(self, text: str, label: str, previous: str | None) -> str:
        stored = self.workspace.store.find_texts([text]).get(text)
        if stored is None or stored.label != label:
            return (
                f"Undid '{label}' in the history; the example had been changed since, left as is."
            )
        if previous is None:
            self.workspace.remove([text])
            return f"Undid '{label}'."
        self.workspace.add([text], previous, source=self.source, relabel=True, train="never")
        return f"Undid '{label}'; the text is labeled '{previous}' again."

    def _log(self, text: str, action: str, label: str | None, previous: str | None) -> None:
        with self.workspace.store.transaction() as conn:
            conn.execute(
                "INSERT INTO label_log (text, action, label, previous, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (text, action, label, previous, time.time()),
            )

    def _notice(self) -> str | None:
        """Say when a new model starts serving."""
        model = self.workspace.status()["model"]
        if model == self._model:
            return None
        self._model = model
        return f"Model {model} now answers." if model is not None else "Retrieval answers again."


__all__ = [
    "HELP",
    "Answer",
    "LabelSession",
    "Progress",
    "Question",
    "Reply",
    "parse_answer",
]
