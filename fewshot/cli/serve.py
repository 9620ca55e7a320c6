"""``fewshot serve``: the workspace over HTTP, for applications that ask many times a second.

Safe by default: it binds to 127.0.0.1; any other address needs a token
(``FEWSHOT_SERVE_TOKEN``, at least 16 characters), which every request but ``/healthz`` and
the docs must then carry as ``Authorization: Bearer <token>``. The token is never printed.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import click

MIN_TOKEN = 16
NEEDS_EXTRA = "fewshot serve needs the serve extra: pip install 'fewshot[serve]'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve_token(host: str) -> str | None:
    """Return the token the server requires (None: none), or refuse an unsafe start."""
    token = os.environ.get("FEWSHOT_SERVE_TOKEN") or None
    if token is not None and len(token) < MIN_TOKEN:
        raise click.ClickException(
            f"FEWSHOT_SERVE_TOKEN is {len(token)} characters long; use a secret of at least "
            f"{MIN_TOKEN} (make one with: python -c "
            "'import secrets; print(secrets.token_urlsafe())')."
        )
    if token is None and not is_loopback(host):
        raise click.ClickException(
            f"--host {host} is not a loopback address, so other machines could reach the "
            "server: set FEWSHOT_SERVE_TOKEN to a secret (clients send it as "
            "`Authorization: Bearer <token>`), or serve on 127.0.0.1."
        )
    return token


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most texts in one request (more: 413).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=1 << 20,
    show_default=True,
    help="Largest request body (larger: 413).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a request may take (longer: 504).",
)
@click.option("--log-level", type=click.Choice(["warning", "info", "debug"]), default="info")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    max_batch: int,
    max_body_bytes: int,
    timeout: float,
    log_level: str,
) -> None:
    """Serve the workspace over HTTP: POST /classify, POST /examples, GET /status, /docs."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise click.ClickException(NEEDS_EXTRA) from err
    token = serve_token(host)
    from fewshot.server.app import Limits, create_app
    from fewshot.server.worker import Worker

    worker = Worker(ctx.obj["store"], max_batch)
    path = worker.start()  # opens and warms up the workspace: a bad --store fails here
    app: Any = create_app(worker, Limits(max_batch, max_body_bytes, timeout), token)
    shown = f"[{host}]" if ":" in host else host
    guard = "token required" if token else "no token: this machine only"
    click.echo(f"Serving {path} on http://{shown}:{port} ({guard}); docs at /docs.", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        worker.stop()


__all__ = ["NEEDS_EXTRA", "is_loopback", "serve", "serve_token"]
