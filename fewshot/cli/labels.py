"""The label commands: ``label-add``, ``labels``, ``label-edit``, ``label-remove``.

A declared label answers from its name (or ``name: description``) before it has any
example (:mod:`fewshot.labelset`, :mod:`fewshot.stages.priors`).
"""

from __future__ import annotations

import json

import click

from fewshot.cli.base import open_workspace

DESCRIPTION_HELP = "What the label means, in words (its prior is 'NAME: TEXT')."


@click.command(name="label-add")
@click.argument("name")
@click.option("--description", default=None, help=DESCRIPTION_HELP)
@click.pass_context
def label_add(ctx: click.Context, name: str, description: str | None) -> None:
    """Declare label NAME, before (or beside) its examples."""
    from fewshot.labelset import declaration

    declaration(name, description, "label-add")  # checked before a workspace is created
    info = open_workspace(ctx, create=True).add_label(name, description)
    click.echo(f"Declared label '{info.name}' ({info.examples} example(s)).")


@click.command(name="labels")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def labels(ctx: click.Context, fmt: str) -> None:
    """List the labels: name, description, examples, declared or not."""
    rows = [info.to_dict() for info in open_workspace(ctx).labels()]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from fewshot.cli.render import labels_table

    Console().print(labels_table(rows))


@click.command(name="label-edit")
@click.argument("name")
@click.option("--description", required=True, help=DESCRIPTION_HELP + " Empty: none.")
@click.pass_context
def label_edit(ctx: click.Context, name: str, description: str) -> None:
    """Set the description of label NAME."""
    info = open_workspace(ctx).edit_label(name, description)
    click.echo(f"Label '{info.name}': {info.description or '(no description)'}.")


@click.command(name="label-remove")
@click.argument("name")
@click.option(
    "--keep-examples",
    is_flag=True,
    help="Forget only the declaration (description, prior); its examples keep the label.",
)
@click.pass_context
def label_remove(ctx: click.Context, name: str, keep_examples: bool) -> None:
    """Forget declared label NAME (refused while examples carry it, unless --keep-examples)."""
    info = open_workspace(ctx).remove_label(name, keep_examples)
    kept = f"; its {info.examples} example(s) keep the label" if info.examples else ""
    click.echo(f"Removed label '{info.name}'{kept}.")


COMMANDS = (label_add, labels, label_edit, label_remove)

__all__ = ["COMMANDS", "label_add", "label_edit", "label_remove", "labels"]
