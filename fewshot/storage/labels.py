"""Declared labels and their priors' embeddings: the ``labels`` and ``prior_embeddings`` tables.

Schema 3 (see ``storage.store``). A label is declared with ``fewshot label-add NAME
[--description TEXT]``, before or beside its examples. Its prior's embedding is stored per
encoder with the prior's text, so re-indexing never re-encodes and an edited description is
encoded again. Every change bumps the store's revision: the vector cache and the scope
fitted on it are rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fewshot.storage.store import Store


@dataclass(frozen=True)
class DeclaredLabel:
    """A label of the ``labels`` table."""

    name: str
    description: str | None
    created_at: float


class LabelTable:
    """The declared labels of one workspace."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _absent(self) -> bool:
        """Say whether this is a read-only workspace of an older schema (no ``labels`` table)."""
        if not self.store.read_only:
            return False
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'labels'"
        return not self.store.query(sql)

    def declared(self) -> list[DeclaredLabel]:
        """Return every declared label, by name (none in an unmigrated read-only workspace)."""
        if self._absent():
            return []
        rows = self.store.query("SELECT name, description, created_at FROM labels ORDER BY name")
        return [DeclaredLabel(*row) for row in rows]

    def put(self, labels: Sequence[tuple[str, str | None]]) -> None:
        """Declare ``(name, description)`` labels, or set their descriptions, in one transaction."""
        now = time.time()
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO labels (name, description, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET description = excluded.description",
                [(name, description, now) for name, description in labels],
            )
            self.store._bump(conn)

    def delete(self, name: str) -> None:
        """Forget a declared label (its prior's embeddings go with it)."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM labels WHERE name = ?", (name,))
            self.store._bump(conn)

    def vectors(self, encoder: str) -> dict[str, tuple[str, np.ndarray]]:
        """Return ``{label: (prior text, vector)}`` stored under ``encoder``."""
        if self._absent():
            return {}
        rows = self.store.query(
            "SELECT label, text, dim, vector FROM prior_embeddings WHERE encoder = ?", (encoder,)
        )
        return {
            label: (text, np.frombuffer(blob, dtype=np.float32, count=dim))
            for label, text, dim, blob in rows
        }

    def put_vectors(
        self, encoder: str, rows: Sequence[tuple[str, str]], vectors: np.ndarray
    ) -> None:
        """Store the embeddings of ``(label, prior text)`` rows under ``encoder``.

        A label no longer declared (removed meanwhile) is skipped.
        """
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO prior_embeddings SELECT ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM labels WHERE name = ?)",
                [
                    (label, encoder, text, matrix.shape[1], row.tobytes(), label)
                    for (label, text), row in zip(rows, matrix)
                ],
            )


__all__ = ["DeclaredLabel", "LabelTable"]
