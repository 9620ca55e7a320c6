"""The HTTP API of ``fewshot serve``: routes, limits, the token and the error bodies.

Every route but ``/healthz`` and the docs hands its work to the :class:`Worker` and waits
for it at most ``timeout`` seconds. Errors are ``{"error": message}`` with the CLI's
message: 400 bad input, 401 no or a wrong token, 404 nothing to classify with (or no such
endpoint), 409 a label conflict or a workspace that refuses the write, 413 a body or batch
over the limits, 422 a body that does not match the schema, 503 (``/healthz``) a worker
that stopped, 504 a request that ran past the timeout. A bug is a 500 whose body says only
that; its traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from fewshot import __version__
from fewshot.corpus import Row
from fewshot.dataio import clean_text
from fewshot.errors import BackendError, ConflictError, FewshotError, WorkspaceError
from fewshot.server import schema
from fewshot.server.limits import BodyLimit
from fewshot.server.worker import EmptyWorkspace, Worker
from fewshot.workspace import Workspace

T = TypeVar("T")
LOG = logging.getLogger("fewshot.serve")
TOKEN_ENV = "FEWSHOT_SERVE_TOKEN"


@dataclass(frozen=True)
class Limits:
    """What one request may ask: texts per request, body bytes, seconds."""

    max_batch: int = 256
    max_body_bytes: int = 1 << 20
    timeout: float = 30.0


class Refused(Exception):
    """A request the server refuses itself (a status and the message of its body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(err: FewshotError) -> int:
    """Return the HTTP status of a library error."""
    if isinstance(err, EmptyWorkspace):
        return 404
    if isinstance(err, ConflictError):
        return 409
    if isinstance(err, BackendError):
        return 502
    if isinstance(err, WorkspaceError):  # read-only, busy, damaged: its state refuses it
        return 409
    return 400


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": schema.Error} for code in codes}


def create_app(worker: Worker, limits: Limits = Limits(), token: str | None = None) -> Any:
    """Return the ASGI app serving ``worker``'s workspace (``token``: required when given)."""
    app = FastAPI(
        title="fewshot",
        version=__version__,
        description="Classify texts from a few labeled examples; add examples; read status.",
    )
    _handlers(app)
    guarded = [Depends(_bearer(token))] if token else []
    common = (401, 413, 422, 504) if token else (413, 422, 504)
    run = _runner(limits.timeout)

    @app.get("/healthz", response_model=schema.Health, responses=_errors(503))
    async def healthz() -> dict[str, str]:
        """Answer at once while the server is up and its worker takes requests."""
        if not worker.alive:
            raise Refused(503, "the server's worker has stopped; see its log and restart it.")
        return {"status": "ok"}

    @app.post(
        "/classify",
        dependencies=guarded,
        response_model=schema.Prediction | list[schema.Prediction],
        responses=_errors(400, 404, 409, 502, *common),
    )
    async def classify(body: schema.ClassifyBody) -> JSONResponse:
        """Classify ``text`` (one record back) or ``texts`` (a list, in order).

        The records are those of ``fewshot classify --format json``.
        """
        one = isinstance(body, schema.OneText)
        texts = [body.text] if isinstance(body, schema.OneText) else body.texts
        _check_batch(len(texts), limits.max_batch)
        cleaned = [clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, start=1)]
        records = await run(lambda: worker.classify(cleaned, body.k, body.explain))
        return JSONResponse(records[0] if one else records)

    @app.post(
        "/examples",
        dependencies=guarded,
        response_model=schema.Added,
        responses=_errors(400, 409, *common),
    )
    async def examples(body: schema.ExamplesBody) -> JSONResponse:
        """Add labeled examples, as ``fewshot add`` does: all of them or none.

        A text already labeled the same way is counted ``unchanged``; another label is a
        409 unless ``relabel``. A training that becomes due starts in the background.
        """
        rows = _rows(body)
        _check_batch(len(rows), limits.max_batch)
        added = await run(lambda: worker.call(lambda ws: _add(ws, rows, body.relabel)))
        return JSONResponse(added)

    @app.get(
        "/status",
        dependencies=guarded,
        response_model=schema.Status,
        responses=_errors(409, *[c for c in common if c != 422]),
    )
    async def status() -> JSONResponse:
        """Return the workspace's state: ``fewshot status --format json``."""
        return JSONResponse(await run(lambda: worker.call(Workspace.status)))

    plain = app.openapi
    app.openapi = lambda: schema.with_batch_limit(plain(), limits.max_batch)  # type: ignore[method-assign]
    return BodyLimit(app, limits.max_body_bytes)


def _runner(timeout: float) -> Callable[[Callable[[], Future[T]]], Awaitable[T]]:
    """Return ``run(submit)``: queue a job, await it at most ``timeout`` seconds."""

    async def run(submit: Callable[[], Future[T]]) -> T:
        future = submit()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            future.cancel()  # dropped if it has not started; a write under way completes
            raise Refused(
                504,
                f"the request took longer than the server's timeout ({timeout:g} s); an add "
                "under way still completes (see GET /status). Send fewer texts per request, "
                "or start the server with a longer --timeout.",
            ) from None

    return run


def _check_batch(count: int, limit: int) -> None:
    if count > limit:
        raise Refused(
            413,
            f"got {count} texts in one request; the server takes at most {limit} "
            "(--max-batch). Split them into several requests.",
        )


def _rows(body: schema.SameLabel | schema.Examples) -> list[Row]:
    """Clean the texts and labels as ``fewshot add`` does (errors name ``text N``)."""
    if isinstance(body, schema.SameLabel):
        pairs = [(text, body.label) for text in body.texts]
    else:
        pairs = [(e.text, e.label) for e in body.examples]
    return [
        (clean_text(t, "text", f"text {i}"), clean_text(lab, "label", f"text {i}"), f"text {i}")
        for i, (t, lab) in enumerate(pairs, start=1)
    ]


def _add(workspace: Workspace, rows: list[Row], relabel: bool) -> dict[str, Any]:
    """Add as the CLI does: a training that becomes due starts in the background."""
    mode = "never" if workspace.settings.value("train") == "never" else "background"
    result = workspace.add_rows(rows, "serve", relabel=relabel, train=mode)
    training = result.training if isinstance(result.training, str) else None
    return {
        "added": result.added,
        "unchanged": result.unchanged,
        "relabeled": result.relabeled,
        "examples": workspace.corpus.count(),
        "training": training,
    }


def _bearer(token: str) -> Callable[..., Awaitable[None]]:
    """Return a dependency that lets in only ``Authorization: Bearer <token>``."""
    scheme = HTTPBearer(auto_error=False, description=f"The token in ${TOKEN_ENV}.")
    expected = token.encode("utf-8")
    credentials = Depends(scheme)

    async def check(given: HTTPAuthorizationCredentials | None = credentials) -> None:
        offered = b"" if given is None else given.credentials.encode("utf-8", "replace")
        if not hmac.compare_digest(offered, expected):  # constant time in the token's bytes
            raise Refused(
                401,
                "this server needs its token: send the header `Authorization: Bearer <token>` "
                f"with the value of {TOKEN_ENV} the server was started with.",
            )

    return check


def _handlers(app: FastAPI) -> None:
    """Turn every error into ``{"error": message}`` with its status; never a traceback."""

    def body(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(FewshotError)
    async def fewshot_error(request: Request, err: FewshotError) -> JSONResponse:
        return body(status_of(err), str(err))

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return body(err.status, str(err), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return body(422, validation_message(err.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 404:
            message = f"no endpoint {request.url.path}; the endpoints are listed at /docs."
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs."
        else:
            message = str(err.detail)
        return body(err.status_code, message, dict(err.headers or {}))

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception) -> JSONResponse:
        LOG.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return body(500, "internal error (a bug in fewshot); the server's log has the details.")


_SHAPES = {"text", "texts", "examples"}  # the tags of the body shapes, not fields


def validation_message(errors: Any) -> str:
    """Say where each schema error is (``body.texts.2``) and what was expected."""
    parts: list[str] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if len(loc) > 1 and loc[1] in _SHAPES and loc[0] == "body":
            del loc[1]
        where = ".".join(str(p) for p in loc) or "body"
        message = str(error.get("msg", "invalid"))
        if where == "body" and error.get("type") in ("model_attributes_type", "dict_type"):
            message = "expected a JSON object (sent with Content-Type: application/json)"
        elif error.get("type") == "string_pattern_mismatch":  # Text's pattern: not blank
            message = "the text is empty or only whitespace; give a non-empty text"
        part = f"{where}: {message}"
        if part not in parts:
            parts.append(part)
    shown = "; ".join(parts[:5]) + ("; ..." if len(parts) > 5 else "")
    return f"the request body does not match the schema (see /docs): {shown}."


__all__ = ["TOKEN_ENV", "Limits", "create_app", "status_of", "validation_message"]
