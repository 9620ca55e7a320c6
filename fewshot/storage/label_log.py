"""The labeling loop's decisions: the ``label_log`` table (schema 2; see ``storage.store``).

Each row is one decision of ``fewshot label``: ``label`` (with the label the text had
before, when it was a relabel) or ``skip``; ``undone`` marks a decision taken back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from fewshot.storage.store import Store


@dataclass(frozen=True)
class Decision:
    """One decision of the log that has not been undone."""

    id: int
    text: str
    action: str
    label: str | None
    previous: str | None


class LabelLog:
    """The ``label_log`` table of one workspace."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, text: str, action: str, label: str | None, previous: str | None) -> None:
        """Append a decision (``label`` or ``skip``)."""
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO label_log (text, action, label, previous, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (text, action, label, previous, time.time()),
            )

    def skipped(self) -> set[str]:
        """Return the texts whose skip stands (not undone)."""
        rows = self.store.query("SELECT text FROM label_log WHERE action = 'skip' AND undone = 0")
        return {text for (text,) in rows}

    def last(self, texts: Sequence[str]) -> Decision | None:
        """Return the most recent decision on one of ``texts`` not undone yet, or None."""
        marks = ",".join("?" * len(texts)) or "NULL"
        rows = self.store.query(
            "SELECT id, text, action, label, previous FROM label_log WHERE undone = 0 "
            f"AND text IN ({marks}) ORDER BY id DESC LIMIT 1",
            list(texts),
        )
        return Decision(*rows[0]) if rows else None

    def undo(self, decision: Decision) -> None:
        """Mark ``decision`` as undone."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE label_log SET undone = 1 WHERE id = ?", (decision.id,))


__all__ = ["Decision", "LabelLog"]
