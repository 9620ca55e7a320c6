"""The model registry: SetFit versions in SQLite (``models`` table) and under ``models/<version>/``.

A version's status is one of:

* ``serving``: answers ``classify`` (at most one version at a time);
* ``rejected``: trained, kept out by the promotion gate (it can still be served by
  ``rollback VERSION``);
* ``retired``: served once, then replaced by a newer promotion or a rollback.

Every version is kept, with its figures. Promotion and rollback are one transaction each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot.errors import ConfigError, WorkspaceError
from fewshot.storage.store import Store

if TYPE_CHECKING:
    from fewshot.stages.setfit import SetFitModel

MODELS_DIR = "models"
SERVING = "serving"
REJECTED = "rejected"
RETIRED = "retired"


@dataclass(frozen=True)
class ModelVersion:
    """One row of the registry: a trained model version and what was measured of it.

    Attributes:
        version: The version number (1, 2, ...).
        kind: ``setfit``.
        created_at: When it was recorded (seconds since the epoch).
        status: ``serving``, ``rejected`` or ``retired``.
        n_examples: Examples it was trained on.
        labels: The labels it was trained on.
        metrics: The training's figures as recorded (JSON; see ``tasks.train``).
        path: Its directory, relative to the workspace.
    """

    version: int
    kind: str
    created_at: float
    status: str
    n_examples: int
    labels: tuple[str, ...]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def name(self) -> str:
        """The stage name it answers as in the gate's figures (``setfit:v2``)."""
        return f"setfit:v{self.version}"

    @property
    def max_example_id(self) -> int:
        """The newest example id it could have seen in training (0 if unrecorded)."""
        return int(self.metrics.get("max_example_id", 0))

    def to_dict(self) -> dict[str, Any]:
        """Return the row as ``status`` lists it (JSON-ready)."""
        return {
            "version": self.version,
            "kind": self.kind,
            "status": self.status,
            "created_at": self.created_at,
            "n_examples": self.n_examples,
            "labels": list(self.labels),
            "metrics": dict(self.metrics),
            "path": self.path,
        }


class Registry:
    """The versions of one workspace: their rows in the store and their directories.

    Args:
        store: The workspace's store.
        path: The workspace directory (models live in ``path / "models"``).
    """

    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = path
        self._loaded: tuple[tuple[object, ...], SetFitModel] | None = None

    @property
    def directory(self) -> Path:
        """The directory holding the ``<version>/`` model directories."""
        return self.path / MODELS_DIR

    def versions(self) -> list[ModelVersion]:
        """Return every version, oldest first."""
        rows = self.store.query(
            "SELECT version, kind, created_at, status, n_examples, labels, metrics, path "
            "FROM models ORDER BY version"
        )
        return [
            ModelVersion(
                int(v),
                kind,
                float(created),
                status,
                int(n),
                tuple(json.loads(labels)),
                json.loads(metrics),
                path,
            )
            for v, kind, created, status, n, labels, metrics, path in rows
        ]

    def serving(self) -> ModelVersion | None:
        """Return the serving version, or None when retrieval serves."""
        rows = [m for m in self.versions() if m.status == SERVING]
        return rows[-1] if rows else None

    def next_version(self) -> int:
        """Return the number the next trained model gets."""
        return max((m.version for m in self.versions()), default=0) + 1

    def available(self, version: ModelVersion) -> bool:
        """Whether the files of ``version`` are there (see :meth:`problem`)."""
        return self.problem(version.version) is None

    def problem(self, version: int) -> str | None:
        """Why model ``version`` cannot serve (``model v1 unavailable: ...``), None if it can.

        Only checks that its files are there; :meth:`load_model` finds damaged ones.
        """
        from fewshot.stages.setfit import BODY_DIR, HEAD_ARRAYS, HEAD_JSON

        model = self.directory / str(version)
        needed = (
            model,
            model / HEAD_JSON,
            model / HEAD_ARRAYS,
            model / BODY_DIR / "model.safetensors",
        )
        missing = next((path for path in needed if not path.exists()), None)
        return None if missing is None else f"model v{version} unavailable: {missing} is missing"

    def load_model(self, version: int) -> SetFitModel:
        """Load model ``version`` (safetensors and JSON; nothing is unpickled).

        The last model loaded is kept: asked for again while its files are unchanged (the
        same sizes and modification times), it is returned without reading them again, so
        a long-lived process (``fewshot serve``) loads a version once, and again only when
        its files change.
        """
        from fewshot.stages.setfit import SetFitModel

        directory = self.directory / str(version)
        key = (version, *_stamps(directory))
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1]
        model = SetFitModel.load(directory)
        self._loaded = (key, model) if None not in key else None
        return model

    def record(
        self,
        version: int,
        labels: Sequence[str],
        n_examples: int,
        metrics: Mapping[str, Any],
        promoted: bool,
    ) -> None:
        """Add a trained version; when ``promoted``, it serves from now on (one transaction)."""
        with self.store.transaction() as conn:
            if promoted:
                conn.execute("UPDATE models SET status = ? WHERE status = ?", (RETIRED, SERVING))
            conn.execute(
                "INSERT INTO models (version, kind, created_at, status, n_examples, labels, "
                "metrics, path) VALUES (?, 'setfit', ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    time.time(),
                    SERVING if promoted else REJECTED,
                    n_examples,
                    json.dumps(list(labels), ensure_ascii=False),
                    json.dumps(dict(metrics)),
                    f"{MODELS_DIR}/{version}",
                ),
            )

    def rollback(self, version: int | None = None) -> int | None:
        """Serve ``version``, or step back to the previous serving version (or to retrieval).

        Args:
            version: The version to serve; None steps back from the serving one to the
                newest older version that served before, or to retrieval when there is none.

        Returns:
            The version serving now, or None for retrieval.

        Raises:
            ConfigError: If ``version`` is not in the registry.
            WorkspaceError: If the files of ``version`` are gone. Stepping back skips the
                versions whose files are gone.
        """
        target = self._rollback_target(version)
        if version is None and self.serving() is None:
            return None
        with self.store.transaction() as conn:
            conn.execute("UPDATE models SET status = ? WHERE status = ?", (RETIRED, SERVING))
            if target is not None:
                conn.execute("UPDATE models SET status = ? WHERE version = ?", (SERVING, target))
        return target

    def _rollback_target(self, version: int | None) -> int | None:
        models = self.versions()
        if version is not None:
            if version not in {m.version for m in models}:
                known = ", ".join(str(m.version) for m in models) or "none"
                raise ConfigError(
                    f"no model version {version}; the versions are: {known} (see `fewshot status`)."
                )
            problem = self.problem(version)
            if problem is not None:
                raise WorkspaceError(
                    f"{problem}; it cannot serve. Train a new version with "
                    "`fewshot train --force`, or roll back to another (see `fewshot status`)."
                )
            return version
        current = self.serving()
        if current is None:
            return None
        older = [m.version for m in models if m.status == RETIRED and m.version < current.version]
        usable = [v for v in older if self.problem(v) is None]
        return usable[-1] if usable else None


def _stamps(directory: Path) -> list[tuple[int, int] | None]:
    """Return the size and modification time of each file of a model (None for one missing)."""
    from fewshot.stages.setfit import BODY_DIR, HEAD_ARRAYS, HEAD_JSON

    stamps: list[tuple[int, int] | None] = []
    for path in (directory / HEAD_JSON, directory / HEAD_ARRAYS, directory / BODY_DIR):
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            try:
                info = file.stat()
            except OSError:
                stamps.append(None)
                continue
            stamps.append((info.st_size, info.st_mtime_ns))
    return stamps


__all__ = ["MODELS_DIR", "REJECTED", "RETIRED", "SERVING", "ModelVersion", "Registry"]
