"""What a Ray worker gets: a read-only copy of what serves, as files, never live objects.

The driver copies the workspace's database with SQLite's backup API (a consistent copy
while other processes write; the examples, their stored embeddings, the labels and their
priors, the settings, the model registry) and the directory of the SetFit version that
answers (safetensors, the head's arrays and JSON, its ONNX export). The files travel as
bytes through Ray's object store, so a worker on another machine needs no shared disk. Each
actor writes them to a private temporary directory and opens that copy read-only: no
worker ever opens the user's database, nothing is written back, nothing is unpickled.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote

from fewshot.storage.registry import MODELS_DIR
from fewshot.storage.store import DB_NAME, Store
from fewshot.tasks.answer import answering_version
from fewshot.workspace import Workspace

Files = dict[str, bytes]
"""Relative path -> content."""


def take(workspace: Workspace, stage: str) -> Files:
    """Return the files that answer as ``stage`` (``auto``: the serving version, if any)."""
    files = {DB_NAME: _database_copy(workspace.path / DB_NAME)}
    version = answering_version(workspace.registry, stage)
    if version is not None:
        model = workspace.path / MODELS_DIR / str(version)
        for path in sorted(model.rglob("*")) if model.is_dir() else []:
            if path.is_file():
                files[path.relative_to(workspace.path).as_posix()] = path.read_bytes()
    return files


def _database_copy(path: Path) -> bytes:
    """Return a consistent copy of the database ``path`` as one file (no WAL beside it)."""
    source = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    with tempfile.TemporaryDirectory(prefix="fewshot-snapshot-") as tmp:
        copy = Path(tmp) / DB_NAME
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
            source.close()
        return copy.read_bytes()


def restore(files: Files, directory: Path) -> None:
    """Write ``files`` into ``directory`` (see :func:`open_copy`)."""
    root = directory.resolve()
    for name, content in files.items():
        target = (root / name).resolve()
        if root not in target.parents:  # a snapshot names paths inside its directory only
            raise ValueError(f"snapshot path outside its directory: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def open_copy(directory: Path) -> Workspace:
    """Open the restored snapshot in ``directory`` as a read-only workspace."""
    root = directory.resolve()
    return Workspace(root, Store.open(root / DB_NAME, read_only=True))


__all__ = ["Files", "open_copy", "restore", "take"]
