"""The workspace's SQLite connection: read-write (WAL) or read-only, and errors a user can act on.

Every statement of a workspace's connection runs through :class:`Connection`, so a database
error (a damaged page, a lock held past the busy timeout, a read-only file) reaches the user as
a :class:`~fewshot.errors.WorkspaceError` naming the file, never as a traceback. A broken
constraint counts as damage: fewshot checks its writes inside their transaction, so a UNIQUE
failure means a table and its index disagree. Misuse of the ``sqlite3`` API by fewshot itself
(``ProgrammingError``) is a bug and keeps its traceback.

A database this process may not write (a read-only mount, an immutable file, a file or
directory without write permission) is opened read-only: ``mode=ro``, or ``immutable=1`` when
SQLite cannot share the WAL index read-only (no ``-shm`` file, and none can be made). Nothing
is written then: no WAL switch, no migration, no cache.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from fewshot.errors import WorkspaceError

BUSY_TIMEOUT = 30.0
"""Seconds a writer waits for another one before giving up (then an Error says so)."""


def writable(path: Path) -> bool:
    """Whether this process may write the database ``path`` and create files beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def read_only_error(path: Path, detail: str = "") -> WorkspaceError:
    """Return the error of a write to the read-only workspace whose database is ``path``."""
    return WorkspaceError(
        f"{path.parent}: the workspace is read-only{detail}; this command changes it and "
        f"needs write access to the directory and {path.name}. Read-only commands (status, "
        "classify, export, eval, prompt, config) work as they are."
    )


def damaged_error(path: Path, err: BaseException) -> WorkspaceError:
    """Return the error of a database file found damaged (or that is no database at all)."""
    what = "not a fewshot workspace database, or a damaged one"
    if getattr(err, "sqlite_errorname", "") != "SQLITE_NOTADB":
        what = "the workspace database is damaged"
    return WorkspaceError(
        f"{path}: {what} ({err}). If it held labels, restore the workspace from a backup, "
        "or run `fewshot --store BACKUP export > labels.jsonl` on a backup copy and "
        "`fewshot import labels.jsonl` into a new workspace."
    )


def database_error(path: Path, err: sqlite3.DatabaseError) -> WorkspaceError:
    """Turn an SQLite error on the workspace database ``path`` into one a user can act on."""
    name = str(getattr(err, "sqlite_errorname", ""))
    if name.startswith("SQLITE_READONLY"):
        return read_only_error(path, f" ({err})")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return WorkspaceError(
            f"{path}: the workspace is busy: another fewshot process held it for over "
            f"{BUSY_TIMEOUT:.0f} s ({err}); try again when it is done. Nothing was changed."
        )
    if name == "SQLITE_FULL":
        return WorkspaceError(f"{path}: the disk is full ({err}); nothing was changed.")
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return WorkspaceError(
            f"{path}: cannot read or write the workspace database ({err}); check the disk, "
            "the file's permissions and the path given to --store (or FEWSHOT_STORE)."
        )
    return damaged_error(path, err)


class _Guard:
    """Re-raises an SQLite error of the block as :func:`database_error`."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.ProgrammingError):
            raise database_error(self.path, err) from err


class _Cursor(sqlite3.Cursor):
    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._guard = _Guard(connection.db_path)

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        with self._guard:
            super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> _Cursor:
        with self._guard:
            super().executemany(sql, seq_of_parameters)
        return self

    def fetchone(self) -> Any:
        with self._guard:
            return super().fetchone()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with self._guard:
            return super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        with self._guard:
            return super().fetchall()

    def __next__(self) -> Any:
        with self._guard:
            return super().__next__()


class Connection(sqlite3.Connection):
    """An SQLite connection to a workspace database whose errors name the file."""

    db_path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """Run one statement (its errors name the database)."""
        return _Cursor(self).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        """Run one statement per parameter set (its errors name the database)."""
        return _Cursor(self).executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        """Run a script of statements (its errors name the database)."""
        with _Guard(self.db_path):
            return super().executescript(sql_script)


def _open(target: str, path: Path, uri: bool = False) -> Connection:
    with _Guard(path):
        conn = sqlite3.connect(
            target, isolation_level=None, timeout=BUSY_TIMEOUT, uri=uri, factory=Connection
        )
    conn.db_path = path
    return conn


def connect(path: Path, read_only: bool = False) -> Connection:
    """Open the database ``path``: read-write in WAL mode, or read-only (see the module)."""
    if read_only:
        conn = _open_read_only(path)
    else:
        conn = _open(str(path), path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            conn.close()
            raise
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _open_read_only(path: Path) -> Connection:
    target = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = _open(target, path, uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except WorkspaceError:  # a WAL database with no -shm file, in a directory we cannot write
        conn.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # immutable=1 would not read the WAL: its changes would look lost.
        raise WorkspaceError(
            f"{path}: the workspace is read-only and its last changes are still in "
            f"{wal.name} (a fewshot process was stopped before it finished); open it once "
            "with write access (any command) and it reads in full."
        )
    return _open(target + "&immutable=1", path, uri=True)


__all__ = [
    "BUSY_TIMEOUT",
    "Connection",
    "connect",
    "damaged_error",
    "database_error",
    "read_only_error",
    "writable",
]
