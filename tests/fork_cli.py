"""Real ``fewshot`` processes that start in a second, for the crash tests that kill many of them.

Importing sentence-transformers and torch takes 10-20 s per process. multiprocessing's
forkserver imports them once, in a clean interpreter of its own (nothing the test process
opened, no SQLite connection and no lock, crosses a fork); each :class:`Child` is a real
process forked from it that runs the CLI's entry point with its own arguments, stdout and
stderr, and can be killed with SIGKILL at any point, like any ``fewshot`` process.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

PRELOAD = [
    "fewshot.cli",
    "fewshot.workspace",
    "fewshot.tasks.train",
    "fewshot.stages.setfit",
    "faiss",
    "torch",
    "sentence_transformers",
    "datasets",
    "sklearn.linear_model",
    "safetensors.numpy",
    "transformers.trainer",
    "setfit",
    "setfit.trainer",
]


def run_cli(args: list[str], out: str) -> None:
    """Run ``fewshot ARGS`` in this (child) process, its stdout and stderr going to ``out``."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from fewshot.cli import cli

    cli.main(args=args, prog_name="fewshot")


class Child:
    """One ``fewshot`` process: wait for it with a deadline, or kill it."""

    def __init__(self, process: Any, out: Path) -> None:
        self.process = process
        self.out = out

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; return the exit code, or None if it still runs."""
        self.process.join(timeout)
        code = self.process.exitcode
        return None if code is None else int(code)

    def kill(self) -> int:
        """Send SIGKILL and reap it; return its exit code (-9 if the signal ended it)."""
        self.process.kill()
        self.process.join(60)
        return int(self.process.exitcode)

    @property
    def output(self) -> str:
        """What it wrote to stdout and stderr."""
        return self.out.read_text(encoding="utf-8", errors="replace")


class Fewshot:
    """Starts ``fewshot`` children from one forkserver (see the module)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.started = 0
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)

    def start(self, *args: str) -> Child:
        """Start ``fewshot ARGS`` and return at once."""
        self.started += 1
        out = self.scratch / f"child-{self.started}.out"
        process = self.context.Process(target=run_cli, args=(list(args), str(out)), daemon=True)
        process.start()
        return Child(process, out)

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        """Run ``fewshot ARGS`` to its end; return its exit code and output."""
        child = self.start(*args)
        code = child.wait(timeout)
        if code is None:
            child.kill()
            raise AssertionError(f"fewshot {' '.join(args)} ran over {timeout} s")
        return code, child.output


__all__ = ["PRELOAD", "Child", "Fewshot", "run_cli"]
