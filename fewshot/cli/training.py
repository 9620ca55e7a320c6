"""The CLI's training: ``fewshot train`` and what ``add`` / ``import`` do when one is due.

From the command line, an add or import that makes a training due starts it in the
background and returns once its rows are committed; ``--wait`` trains before returning.
``fewshot train --wait`` waits for a training under way and reports the version it made.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from fewshot.cli.base import open_workspace

if TYPE_CHECKING:
    from fewshot.workspace import Workspace


def wait_option(command: Any) -> Any:
    """Add ``--wait`` to ``add`` / ``import``."""
    return click.option(
        "--wait",
        is_flag=True,
        help="Train in the foreground before returning when training is due (default: "
        "in the background).",
    )(command)


def add_mode(workspace: Workspace, wait: bool) -> str:
    """Return the ``train`` mode of a CLI add or import: background, or now with ``--wait``.

    The setting ``train never`` still wins; ``auto`` and ``background`` both start a due
    training in the background unless ``--wait``.
    """
    if workspace.settings.value("train") == "never":
        return "never"
    return "auto" if wait else "background"


@click.command()
@click.option("--force", is_flag=True, help="Train even when no new labels call for it.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for a training under way and show the version it made (else train now if due).",
)
@click.pass_context
def train(ctx: click.Context, force: bool, wait: bool) -> None:
    """Train a SetFit model now (normally automatic); it serves only if it wins the gate."""
    from fewshot.cli.render import trained_message, version_message
    from fewshot.storage.registry import ModelVersion

    workspace = open_workspace(ctx)
    progress = sys.stderr.isatty()
    if wait and force:
        raise click.UsageError("--force trains now, --wait waits for a training: give one.")
    if wait:
        report = workspace.wait_for_training(progress=progress)
    else:
        report = workspace.train(force=force, progress=progress)
    if report is None:
        click.echo("No training is due (see `fewshot status`); --force trains anyway.")
    elif isinstance(report, ModelVersion):
        click.echo(version_message(report.to_dict()))
    else:
        click.echo(trained_message(report))


@click.command()
@click.argument("version", type=int, required=False)
@click.pass_context
def rollback(ctx: click.Context, version: int | None) -> None:
    """Serve model VERSION, or step back to the previous version (or to retrieval)."""
    serving = open_workspace(ctx).rollback(version)
    click.echo("Now serving: retrieval." if serving is None else f"Now serving: v{serving}.")


__all__ = ["add_mode", "rollback", "train", "wait_option"]
