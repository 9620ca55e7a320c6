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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot.errors import ConfigError
from fewshot.store import Store

if TYPE_CHECKING:
    from fewshot.stages.setfit import SetFitModel

MODELS_DIR = "models"
SERVING = "serving"
REJECTED = "rejected"
RETIRED = "retired"


def models_dir(workspace_path: Path) -> Path:
    """Return the directory holding the ``<version>/`` model directories."""
    return workspace_path / MODELS_DIR


def load_model(workspace_path: Path, version: int) -> SetFitModel:
    """Load model ``version`` of the workspace at ``workspace_path`` (nothing is unpickled)."""
    from fewshot.stages.setfit import SetFitModel

    return SetFitModel.load(models_dir(workspace_path) / str(version))


def serving(store: Store) -> dict[str, Any] | None:
    """Return the registry row of the serving version, or None when retrieval serves."""
    rows = [m for m in store.models() if m["status"] == SERVING]
    return rows[-1] if rows else None


def next_version(store: Store) -> int:
    """Return the number the next trained model gets."""
    return max((m["version"] for m in store.models()), default=0) + 1


def record(
    store: Store,
    version: int,
    labels: list[str],
    n_examples: int,
    metrics: dict[str, Any],
    promoted: bool,
) -> None:
    """Add a trained version to the registry; when ``promoted``, it serves from now on."""
    with store.transaction() as conn:
        if promoted:
            conn.execute("UPDATE models SET status = ? WHERE status = ?", (RETIRED, SERVING))
        conn.execute(
            "INSERT INTO models (version, kind, created_at, status, n_examples, labels, metrics, "
            "path) VALUES (?, 'setfit', ?, ?, ?, ?, ?, ?)",
            (
                version,
                time.time(),
                SERVING if promoted else REJECTED,
                n_examples,
                json.dumps(labels, ensure_ascii=False),
                json.dumps(metrics),
                f"{MODELS_DIR}/{version}",
            ),
        )


def rollback(store: Store, version: int | None = None) -> int | None:
    """Serve ``version``, or step back to the previous serving version (or to retrieval).

    Args:
        store: The workspace's store.
        version: The version to serve; None steps back from the serving one to the newest
            older version that served before, or to retrieval when there is none.

    Returns:
        The version serving now, or None for retrieval.

    Raises:
        ConfigError: If ``version`` is not in the registry.
    """
    models = store.models()
    current = serving(store)
    if version is not None:
        if version not in {m["version"] for m in models}:
            known = ", ".join(str(m["version"]) for m in models) or "none"
            raise ConfigError(
                f"no model version {version}; the versions are: {known} (see `fewshot status`)."
            )
        target: int | None = version
    elif current is None:
        return None
    else:
        older = [
            m["version"]
            for m in models
            if m["status"] == RETIRED and m["version"] < current["version"]
        ]
        target = older[-1] if older else None
    with store.transaction() as conn:
        conn.execute("UPDATE models SET status = ? WHERE status = ?", (RETIRED, SERVING))
        if target is not None:
            conn.execute("UPDATE models SET status = ? WHERE version = ?", (SERVING, target))
    return target


def listing(store: Store) -> list[dict[str, Any]]:
    """Return the registry for ``status``: oldest first, with status, time and figures."""
    return [
        {
            "version": m["version"],
            "kind": m["kind"],
            "status": m["status"],
            "created_at": m["created_at"],
            "n_examples": m["n_examples"],
            "labels": m["labels"],
            "metrics": m["metrics"],
            "path": m["path"],
        }
        for m in store.models()
    ]


__all__ = ["models_dir", "next_version", "record", "rollback", "serving"]
