"""The body limit of ``fewshot serve``: a request over it is refused before it is parsed.

An ASGI middleware: a ``Content-Length`` over the limit is refused at once, and a body sent
without one (chunked) is read only up to the limit. Either way the answer is a 413 with an
``{"error": message}`` body, and the app never sees the request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Wrap ``app`` so that no request body over ``limit`` bytes reaches it."""

    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read, or answer 413 (400: a bad length)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.strip().isdigit():
            await _refuse(send, 400, "the Content-Length header is not a number of bytes.")
            return
        if length is not None and int(length) > self.limit:
            await _refuse(send, 413, self._message(int(length)))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.limit:
                await _refuse(send, 413, self._message(size, more=True))
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _message(self, size: int, more: bool = False) -> str:
        got = f"more than {size}" if more else str(size)
        return (
            f"the request body has {got} bytes; the server takes at most {self.limit} "
            "(--max-body-bytes). Send fewer or shorter texts per request."
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that gives the body read already, then what the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BodyLimit"]
