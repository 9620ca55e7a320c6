"""A real ``fewshot serve`` process on a free loopback port, and a small client for it.

The server is started as users start it (``python -m fewshot --store DIR serve --port P``),
its log goes to a file (a pipe nobody reads would block it), and it is ready once
``/healthz`` answers. The client is urllib: status and parsed JSON body of every request.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STARTUP = 180.0  # seconds: the encoder loads before the port opens (slow on a busy machine)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``fewshot serve`` on ``store``: start with ``with``, stopped (SIGTERM) on exit."""

    def __init__(self, store: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = options
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = store.parent / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "fewshot", "--store", str(self.store), "serve"]
        command += ["--port", str(self.port), *self.options]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + STARTUP
        while True:  # poll /healthz: the server says when it is ready by answering
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited:\n{self.output()}")
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewshot serve did not start:\n{self.output()}")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        """What the server wrote to its log so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return its status and JSON body (raw text if not JSON)."""
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        sent = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.url + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")
