"""The callable class Ray Data runs on each worker: it loads the snapshot once, then answers.

Ray makes one instance per actor of the pool (``ActorPoolStrategy``); ``__call__`` gets a
batch of rows as a pyarrow table (the other columns pass through with their types) and
returns it with the texts cleaned and ``label``, ``confidence``, ``stage`` and ``scores``
added, answered by the same code as a local ``Workspace.classify``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from fewshot.ray import snapshot
from fewshot.tables import ADDED, added_columns, text_of
from fewshot.workspace import Workspace


class Classifier:
    """Answers batches from a read-only copy of the workspace (see :mod:`fewshot.ray.snapshot`).

    Args:
        files: A one-element list holding the object reference of the snapshot's files (in a
            list, so that Ray hands the reference over instead of resolving it early).
        text_field: The column that holds the texts.
        k: Neighbours that vote (None: the workspace's setting).
        stage: Who answers (None: the workspace's setting).
        llm: As for :meth:`fewshot.workspace.Workspace.classify`.
    """

    def __init__(
        self,
        files: list[Any],
        text_field: str,
        k: int | None,
        stage: str | None,
        llm: Any,
    ) -> None:
        import ray

        self.directory = Path(tempfile.mkdtemp(prefix="fewshot-ray-"))
        snapshot.restore(ray.get(files[0]), self.directory)
        self.text_field, self.k, self.stage, self.llm = text_field, k, stage, llm
        self._local = threading.local()  # Ray may call from another thread than __init__'s

    @property
    def workspace(self) -> Workspace:
        """Return this thread's read-only workspace over the snapshot (one connection each)."""
        opened: Workspace | None = getattr(self._local, "workspace", None)
        if opened is None:
            opened = self._local.workspace = snapshot.open_copy(self.directory)
        return opened

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Return ``batch`` with its texts cleaned and the four answer columns added."""
        where = f"column '{self.text_field}'"
        texts = [text_of(value, where) for value in batch.column(self.text_field).to_pylist()]
        predictions = self.workspace.classify(texts, k=self.k, stage=self.stage, llm=self.llm)
        columns = added_columns(predictions)
        index = batch.schema.get_field_index(self.text_field)
        out = batch.set_column(index, self.text_field, pa.array(texts, pa.string()))
        for name in ADDED:
            kind = pa.float64() if name == "confidence" else pa.string()
            out = out.append_column(name, pa.array(columns[name], kind))
        return out

    def __del__(self) -> None:
        directory = getattr(self, "directory", None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


__all__ = ["Classifier"]
