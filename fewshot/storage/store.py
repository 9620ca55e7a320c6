"""The workspace's SQLite store: the source of truth for examples, embeddings, models, settings.

Embeddings are kept per encoder as float32 blobs, so rebuilding the vector index never
re-encodes. Every write is one transaction; the database runs in WAL mode. A database this
process may not write opens read-only and refuses writes; the connection and its errors (a
damaged file, a busy or read-only one) are :mod:`fewshot.storage.database`'s.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import WorkspaceError
from fewshot.storage.database import connect, read_only_error, writable
from fewshot.values import Example

DB_NAME = "fewshot.sqlite"

# Each migration takes the schema from the version before it to its own; a new database runs
# them all. ``PRAGMA user_version`` holds the version reached. Never edit a migration that
# has shipped: add the next one.
MIGRATIONS: tuple[str, ...] = (
    # 1: examples, their embeddings per encoder, the model registry, settings.
    """
    CREATE TABLE IF NOT EXISTS examples (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS embeddings (
        example_id INTEGER NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
        encoder TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (example_id, encoder)
    );
    CREATE TABLE IF NOT EXISTS models (
        version INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        created_at REAL NOT NULL,
        status TEXT NOT NULL,
        n_examples INTEGER NOT NULL,
        labels TEXT NOT NULL,
        metrics TEXT NOT NULL,
        path TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: the labeling loop's decisions (schema 1 workspaces made it on the first `label`).
    """
    CREATE TABLE IF NOT EXISTS label_log (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        action TEXT NOT NULL,
        label TEXT,
        previous TEXT,
        created_at REAL NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 3: labels declared before (or beside) their examples, and their priors' embeddings.
    """
    CREATE TABLE IF NOT EXISTS labels (
        name TEXT PRIMARY KEY,
        description TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS prior_embeddings (
        label TEXT NOT NULL REFERENCES labels(name) ON DELETE CASCADE,
        encoder TEXT NOT NULL,
        text TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (label, encoder)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into its statements (to run them inside one transaction)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


class Store:
    """A connection to one workspace database.

    Use :meth:`create` for a new workspace and :meth:`open` for an existing one.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: bool = False) -> None:
        self.path = path
        self._conn = conn
        self.read_only = read_only
        """Whether the database was opened read-only (this process may not write it)."""

    @classmethod
    def create(cls, path: Path) -> Store:
        """Create the database at ``path`` (which must not exist yet)."""
        store = cls(path, connect(path))
        workspace_id = json.dumps(uuid.uuid4().hex).replace("'", "")
        # One script, one transaction: a crash leaves no half-made schema.
        store._conn.executescript(
            f"BEGIN; {''.join(MIGRATIONS)} PRAGMA user_version = {SCHEMA_VERSION}; "
            f"INSERT OR IGNORE INTO settings VALUES ('workspace_id', '{workspace_id}'), "
            "('revision', '0'); COMMIT;"
        )
        return store

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> Store:
        """Open an existing database, checking that it is a fewshot workspace.

        A database this process may not write, or any with ``read_only``, is opened
        read-only (:attr:`read_only`): it reads as it is, an older schema included, and
        every write is refused.
        """
        if not path.is_file():
            raise WorkspaceError(
                f"{path}: no workspace database here; create one with `fewshot init`."
            )
        read_only = read_only or not writable(path)
        store = cls(path, connect(path, read_only), read_only)
        try:
            store._check()
        except BaseException:
            store.close()
            raise
        return store

    def _check(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{self.path}: made by a newer fewshot (schema {version}, this one reads "
                f"{SCHEMA_VERSION}); upgrade fewshot."
            )
        if not {"examples", "embeddings", "settings"} <= tables:
            raise WorkspaceError(f"{self.path}: an SQLite database, but not a fewshot workspace.")
        if version < SCHEMA_VERSION and not self.read_only:
            self._migrate()

    def _migrate(self) -> None:
        """Bring a workspace of an older schema up to :data:`SCHEMA_VERSION` (one transaction).

        The version is read again under the write lock: of two processes opening an old
        workspace at once, the second finds it migrated.
        """
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for statement in _statements("".join(MIGRATIONS[version:])):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def check_writable(self) -> None:
        """Raise WorkspaceError ("the workspace is read-only") when this store is read-only."""
        if self.read_only:
            raise read_only_error(self.path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction: all of it is committed, or none.

        ``BEGIN IMMEDIATE`` takes the write lock first (waiting up to the busy timeout for
        another writer), so what the block reads is what it writes over.
        """
        self.check_writable()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read the block from one state of the database (a read transaction; writes wait not)."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- settings -------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """Return a JSON setting, or ``default`` when it is not set."""
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any, conn: sqlite3.Connection | None = None) -> None:
        """Set a JSON setting (inside ``conn``'s transaction when given)."""
        sql = (
            "INSERT INTO settings VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        )
        if conn is not None:
            conn.execute(sql, (key, json.dumps(value)))
            return
        with self.transaction() as own:
            own.execute(sql, (key, json.dumps(value)))

    def delete_setting(self, key: str) -> None:
        """Remove a setting (it reads as its default again)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))

    def settings(self) -> dict[str, Any]:
        """Return every setting."""
        return {k: json.loads(v) for k, v in self._conn.execute("SELECT key, value FROM settings")}

    @property
    def revision(self) -> int:
        """A counter bumped by every change to the set of examples (the index's staleness key)."""
        return int(self.get_setting("revision", 0))

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE settings SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
            "WHERE key = 'revision'"
        )

    # -- examples -------------------------------------------------------------------------

    def add_examples(
        self,
        rows: Sequence[tuple[str, str]],
        source: str,
        encoder: str | None = None,
        vectors: np.ndarray | None = None,
        relabel: Sequence[tuple[int, str]] = (),
        conn: sqlite3.Connection | None = None,
    ) -> list[int]:
        """Insert new examples (and their embeddings under ``encoder``) in one transaction.

        Args:
            rows: ``(text, label)`` pairs whose texts are not in the store yet.
            source: Where they came from (``add``, ``import:file.csv``, ``label``...).
            encoder: The key of the encoder that produced ``vectors``.
            vectors: One row per example in ``rows``, or None to embed later.
            relabel: ``(id, new label)`` changes to existing examples, in the same transaction.
            conn: The transaction (of :meth:`transaction`) to write in; None opens one.

        Returns:
            The ids of the new examples, in order.
        """
        if conn is None:
            with self.transaction() as own:
                return self.add_examples(rows, source, encoder, vectors, relabel, own)
        now = time.time()
        ids: list[int] = []
        for text, label in rows:
            cur = conn.execute(
                "INSERT INTO examples (text, label, source, created_at) VALUES (?, ?, ?, ?)",
                (text, label, source, now),
            )
            ids.append(int(cur.lastrowid or 0))
        if vectors is not None and encoder is not None:
            self._put_embeddings(conn, encoder, ids, vectors)
        conn.executemany(
            "UPDATE examples SET label = ? WHERE id = ?", [(lab, i) for i, lab in relabel]
        )
        if ids or relabel:
            self._bump(conn)
        return ids

    def delete_example(self, example_id: int) -> None:
        """Delete one example (and its embeddings)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM examples WHERE id = ?", (example_id,))
            self._bump(conn)

    def find_texts(self, texts: Sequence[str]) -> dict[str, Example]:
        """Return the stored examples whose text is one of ``texts``, keyed by text."""
        found: dict[str, Example] = {}
        unique = list(dict.fromkeys(texts))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT id, text, label, source, created_at FROM examples WHERE text IN ({marks})",
                chunk,
            ):
                found[row[1]] = Example(*row)
        return found

    def examples(self) -> list[Example]:
        """Return every example, oldest first."""
        rows = self._conn.execute(
            "SELECT id, text, label, source, created_at FROM examples ORDER BY id"
        )
        return [Example(*row) for row in rows]

    def count(self) -> int:
        """Return the number of examples."""
        return int(self._conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    def label_counts(self) -> dict[str, int]:
        """Return {label: number of examples}, labels sorted by name."""
        rows = self._conn.execute(
            "SELECT label, COUNT(*) FROM examples GROUP BY label ORDER BY label"
        )
        return {label: int(n) for label, n in rows}

    # -- embeddings -----------------------------------------------------------------------

    def _put_embeddings(
        self, conn: sqlite3.Connection, encoder: str, ids: Sequence[int], vectors: np.ndarray
    ) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        conn.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
            [(i, encoder, matrix.shape[1], row.tobytes()) for i, row in zip(ids, matrix)],
        )

    def put_embeddings(self, encoder: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store embeddings of existing examples under ``encoder``."""
        with self.transaction() as conn:
            self._put_embeddings(conn, encoder, ids, vectors)

    def missing_embeddings(self, encoder: str) -> list[tuple[int, str]]:
        """Return ``(id, text)`` of the examples with no embedding under ``encoder``."""
        rows = self._conn.execute(
            "SELECT id, text FROM examples WHERE id NOT IN "
            "(SELECT example_id FROM embeddings WHERE encoder = ?) ORDER BY id",
            (encoder,),
        )
        return [(int(i), t) for i, t in rows]

    def embeddings(self, encoder: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ids, matrix)`` of every stored embedding under ``encoder``, by id."""
        rows = self._conn.execute(
            "SELECT example_id, dim, vector FROM embeddings WHERE encoder = ? ORDER BY example_id",
            (encoder,),
        ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = np.stack([np.frombuffer(r[2], dtype=np.float32, count=r[1]) for r in rows])
        return ids, matrix

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Return the rows of a read-only query (for the store's sibling modules)."""
        return list(self._conn.execute(sql, params).fetchall())
