"""How far a training is: ``training.progress.json`` in the workspace, read by ``status``.

The training writes it (atomically) when it starts, after every optimiser step and removes
it when it ends; a background training's parent writes it first, as ``starting``. A file
left by a killed training means nothing: it is only read while a training holds the lock.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from fewshot.storage.files import atomic_write_bytes

PROGRESS_NAME = "training.progress.json"


def write(path: Path, phase: str, step: int, steps: int | None, started_at: float) -> None:
    """Record that the training of the workspace at ``path`` is at ``step`` of ``steps``."""
    record = {
        "phase": phase,
        "step": step,
        "steps": steps if steps is None else max(steps, step),
        "started_at": started_at,
        "updated_at": time.time(),
        "pid": os.getpid(),
    }
    atomic_write_bytes(path / PROGRESS_NAME, json.dumps(record).encode("utf-8"))


def read(path: Path) -> dict[str, Any] | None:
    """Return the recorded progress, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((path / PROGRESS_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def clear(path: Path) -> None:
    """Remove the progress record (the training ended)."""
    (path / PROGRESS_NAME).unlink(missing_ok=True)


def step_counter(path: Path, steps: int, started_at: float) -> Any:
    """Return a ``transformers.TrainerCallback`` that records every step of every phase.

    Args:
        path: The workspace directory.
        steps: The training's planned steps, all phases together.
        started_at: When the training started (seconds since the epoch).
    """
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        """Counts optimiser steps across the training's runs and writes the record."""

        done = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.done += 1
            write(path, "training", self.done, steps, started_at)

    return StepCounter()


__all__ = ["PROGRESS_NAME", "clear", "read", "step_counter", "write"]
