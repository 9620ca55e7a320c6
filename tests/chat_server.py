"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API, for tests.

The only test double the project allows: no LLM can run here, so tests start this server on
a free port in a thread, script its replies (a label, an HTTP error, a reply held until the
client gives up, invalid JSON) and read back every request it received.

    with ChatServer() as server:
        server.script(Reply("refund"), Reply(status=500))
        ...                      # point fewshot at server.url
        server.requests[0].body  # what was sent
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_S = 10.0  # longest a held reply waits for release (the client times out well before)


@dataclass(frozen=True)
class Reply:
    """One scripted reply: a chat completion, or an error status."""

    content: str = ""
    status: int = 200
    logprobs: tuple[float, ...] | None = None
    retry_after: str | None = None
    hold: bool = False  # wait (server side) until the server is released or HOLD_S passes
    raw: bytes | None = None  # send these bytes as the body instead


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent."""
        return list((self.body or {}).get("messages", []))

    @property
    def query(self) -> str:
        """The last user message without the template's ``Text: `` prefix."""
        return self.messages[-1]["content"].removeprefix("Text: ")

    @property
    def demonstrations(self) -> list[tuple[str, str]]:
        """``(text, label)`` of each demonstration (user/assistant pairs), in order."""
        pairs = self.messages[1:-1]
        return [
            (user["content"].removeprefix("Text: "), assistant["content"])
            for user, assistant in zip(pairs[::2], pairs[1::2])
        ]

    @property
    def labels(self) -> list[str]:
        """The labels stated in the system message (its ``- label`` lines)."""
        system = self.messages[0]["content"]
        return [line[2:] for line in system.splitlines() if line.startswith("- ")]


@dataclass
class _State:
    replies: list[Reply] = field(default_factory=list)
    default: Callable[[Recorded], Reply] = lambda request: Reply("")
    requests: list[Recorded] = field(default_factory=list)
    models: tuple[str, ...] = ("test-model",)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)


class ChatServer:
    """The server; use it as a context manager (it stops and releases held replies on exit)."""

    def __init__(self) -> None:
        self.state = _State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=HOLD_S)

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies, used in order; after them, the default responder answers."""
        with self.state.lock:
            self.state.replies.extend(replies)

    def respond(self, responder: Callable[[Recorded], Reply]) -> None:
        """Answer every request (after the scripted ones) with ``responder(request)``."""
        self.state.default = responder

    @property
    def requests(self) -> list[Recorded]:
        """Every request received, in arrival order."""
        with self.state.lock:
            return list(self.state.requests)

    @property
    def chats(self) -> list[Recorded]:
        """The chat-completion requests received."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def max_in_flight(self) -> int:
        """The most chat requests the server was handling at once."""
        return self.state.max_in_flight


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass  # keep test output clean

    def _record(self, body: dict[str, Any] | None) -> Recorded:
        request = Recorded(self.command, self.path, dict(self.headers.items()), body)
        with self.state.lock:
            self.state.requests.append(request)
        return request

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/v1/models"):
            data = [{"id": name, "object": "model"} for name in self.state.models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        request = self._record(body)
        if not self.path.rstrip("/").endswith("/v1/chat/completions"):
            self._send(404, b'{"error": "not found"}')
            return
        with self.state.lock:
            reply = self.state.replies.pop(0) if self.state.replies else None
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        self._in_flight = True
        try:
            self._answer(reply or self.state.default(request), body)
        finally:
            self._done()

    def _done(self) -> None:
        """Count this request out of flight once, before its reply is written.

        After the write the client may send its next request before this thread runs
        again, and counting out only then would see one request too many in flight.
        """
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            with self.state.lock:
                self.state.in_flight -= 1

    def _answer(self, reply: Reply, body: dict[str, Any]) -> None:
        if reply.hold:
            self.state.release.wait(HOLD_S)
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
            self._send(reply.status, b'{"error": {"message": "scripted error"}}', headers)
            return
        if reply.raw is not None:
            self._send(200, reply.raw)
            return
        self._send(200, json.dumps(_completion(reply, body)).encode())

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self._done()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer


def _completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.content},
        "finish_reason": "stop",
    }
    if reply.logprobs is not None and body.get("logprobs"):
        choice["logprobs"] = {
            "content": [{"token": f"t{i}", "logprob": lp} for i, lp in enumerate(reply.logprobs)]
        }
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [choice],
    }
