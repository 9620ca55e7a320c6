"""The one thread of ``fewshot serve`` that owns the workspace, and its queue of jobs.

The HTTP layer never touches the workspace: it hands a job to :class:`Worker` and awaits its
future. One thread runs every job in the order they came, on one open :class:`Workspace`
(its SQLite connection belongs to that thread). Classify requests that wait next to each
other with the same options are answered as one batch: under load the encoder sees many
texts per call, which is where a server gains over a process per call.

What another process changes is seen on the next job: every classify reads the settings,
the store's revision (the FAISS cache is rebuilt when it moved) and the serving version (a
new one is loaded once; models are renamed into place before their row is written, so the
row never names a half-written model). A change of the ``model`` setting elsewhere reopens
the workspace.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fewshot.errors import FewshotError, WorkspaceError
from fewshot.workspace import Workspace

T = TypeVar("T")
Record = dict[str, Any]
LOG = logging.getLogger("fewshot.serve")


class EmptyWorkspace(WorkspaceError):
    """Classify asked of a workspace with no labeled example yet (HTTP 404)."""


@dataclass
class _Job:
    """One request's work: a classify of ``texts`` (``key``: its options), or a call."""

    future: Future[Any]
    texts: list[str] = field(default_factory=list)
    key: tuple[int | None, bool] | None = None
    call: Callable[[Workspace], Any] | None = None


class Worker:
    """Runs jobs on one open workspace, in one thread; see the module docstring.

    Args:
        store: The workspace directory (``--store``), as :func:`fewshot.workspace.resolve_store`
            reads it.
        max_batch: The most texts one batched classify call is given.
    """

    def __init__(self, store: str | Path | None, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self.path: Path | None = None
        self._jobs: deque[_Job | None] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> Path:
        """Open the workspace in the worker's thread and warm it up; return its directory.

        Raises:
            FewshotError: If the workspace cannot be opened (nothing is served then).
        """
        opened: Future[Path] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name="fewshot-worker", daemon=True
        )
        self._thread.start()
        self.path = opened.result()
        return self.path

    @property
    def alive(self) -> bool:
        """Whether the worker's thread still takes jobs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Finish the jobs queued, then close the workspace and end the thread."""
        self._put(None)
        if self._thread is not None:
            self._thread.join()

    def classify(self, texts: list[str], k: int | None, explain: bool) -> Future[list[Record]]:
        """Queue a classify of cleaned ``texts``; the future gives one record each."""
        future: Future[list[Record]] = Future()
        self._put(_Job(future, texts, (k, explain)))
        return future

    def call(self, function: Callable[[Workspace], T]) -> Future[T]:
        """Queue ``function(workspace)``; the future gives what it returns."""
        future: Future[T] = Future()
        self._put(_Job(future, call=function))
        return future

    def _put(self, job: _Job | None) -> None:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

    def _next(self) -> list[_Job] | None:
        """Wait for the next job; classify jobs next to it with its options join it."""
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            first = self._jobs.popleft()
            if first is None:
                return None
            batch, size = [first], len(first.texts)
            while first.key is not None and self._jobs:
                nxt = self._jobs[0]
                if nxt is None or nxt.key != first.key or size + len(nxt.texts) > self.max_batch:
                    break
                batch.append(self._jobs.popleft())  # type: ignore[arg-type]
                size += len(nxt.texts)
            return batch

    def _run(self, opened: Future[Path]) -> None:
        try:
            workspace = Workspace.open(self.store)
        except BaseException as err:
            opened.set_exception(err)
            return
        try:
            _warm_up(workspace)
        except BaseException as err:  # start() re-raises it: nothing is served
            workspace.close()
            opened.set_exception(err)
            return
        opened.set_result(workspace.path)
        try:
            while (batch := self._next()) is not None:
                jobs = [job for job in batch if _claim(job)]
                try:
                    workspace = _current(workspace)
                except Exception as err:  # reopening failed: these requests say why
                    _fail(jobs, err)
                    continue
                _execute(workspace, jobs)
        finally:
            workspace.close()


def _claim(job: _Job) -> bool:
    """Mark the job running; False if its request gave up (timed out) while it waited."""
    return job.future.set_running_or_notify_cancel()


def _execute(workspace: Workspace, batch: list[_Job]) -> None:
    """Run one call, or one classify for a batch of requests, and settle their futures."""
    if not batch:
        return
    first = batch[0]
    try:
        if first.call is not None:
            first.future.set_result(first.call(workspace))
            return
        k, explain = first.key or (None, False)
        texts = [text for job in batch for text in job.texts]
        records = [p.to_dict() for p in _classify(workspace, texts, k, explain)]
    except Exception as err:  # each request reports it: FewshotError as a status, others as 500
        _fail(batch, err)
        return
    start = 0
    for job in batch:
        job.future.set_result(records[start : start + len(job.texts)])
        start += len(job.texts)


def _fail(jobs: list[_Job], err: Exception) -> None:
    if not isinstance(err, FewshotError):
        LOG.error("a request failed", exc_info=err)
    for job in jobs:
        job.future.set_exception(err)


def _classify(workspace: Workspace, texts: list[str], k: int | None, explain: bool) -> list[Any]:
    try:
        return workspace.classify(texts, k=k, explain=explain)
    except WorkspaceError as err:
        if workspace.corpus.count() == 0:
            raise EmptyWorkspace(str(err)) from err
        raise


def _current(workspace: Workspace) -> Workspace:
    """Return ``workspace``, reopened when another process changed its encoder (``model``)."""
    if workspace.model == workspace.corpus.encoder.model:
        return workspace
    path = workspace.path
    workspace.close()
    return Workspace.open(path)


def _warm_up(workspace: Workspace) -> None:
    """Load the encoder, the vectors and the serving model now, not on the first request."""
    _ = workspace.encoder.dim
    if workspace.corpus.count() == 0:
        return
    with contextlib.suppress(FewshotError):  # the first request reports it
        workspace.classify(["warm-up"])


__all__ = ["EmptyWorkspace", "Record", "Worker"]
