"""What the CLI's commands share: opening the workspace, progress, LLM options, output."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from fewshot.cli.render import FORMATS

if TYPE_CHECKING:
    from fewshot.workspace import Workspace


def open_workspace(ctx: click.Context, create: bool = False) -> Workspace:
    """Open the ``--store`` workspace (``create``: make it if missing); closed with ``ctx``."""
    from fewshot.workspace import Workspace

    workspace = Workspace.open(ctx.obj["store"], create=create)
    ctx.call_on_close(workspace.close)
    return workspace


def progress() -> bool:
    """Whether to show progress bars: on a terminal only."""
    return sys.stderr.isatty()


def as_path(file: str) -> Any:
    """Return ``file`` as a ``Path`` (pathlib imported here, off the --help path)."""
    from pathlib import Path

    return Path(file)


def llm_options(command: Any) -> Any:
    """Add --llm-url and --llm-model (they win over FEWSHOT_LLM_* and the workspace's)."""
    url = click.option(
        "--llm-url",
        metavar="URL",
        help="OpenAI-compatible server: base URL (http://localhost:11434/v1) or its endpoint.",
    )
    model = click.option("--llm-model", metavar="NAME", help="Model name on that server.")
    return url(model(command))


def llm_settings(url: str | None, model: str | None) -> Any:
    """Return the ``LLMSettings`` of ``--llm-url`` / ``--llm-model``."""
    from fewshot.backends.base import LLMSettings

    return LLMSettings(url=url, model=model)


def render(records: list[dict[str, Any]], fmt: str | None) -> None:
    """Print prediction records: a table on a terminal, JSON Lines in a pipe, or ``fmt``."""
    from fewshot.cli.render import predictions_table, write_records

    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt == "table":
        from rich.console import Console

        Console().print(predictions_table(records))
    else:
        write_records(records, fmt, sys.stdout)


__all__ = [
    "FORMATS",
    "as_path",
    "llm_options",
    "llm_settings",
    "open_workspace",
    "progress",
    "render",
]
