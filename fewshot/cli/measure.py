"""``fewshot eval``: score the workspace on a labeled file, or every stage side by side."""

from __future__ import annotations

import json

import click

from fewshot.cli.base import llm_options, llm_settings, open_workspace


@click.command(name="eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write the confusion matrix and the reliability diagram as PNG.",
)
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=None, help="Neighbours that vote.")
@click.option("--compare", is_flag=True, help="Score every stage side by side.")
@llm_options
@click.pass_context
def eval_(
    ctx: click.Context,
    file: str,
    fmt: str,
    plot: str | None,
    text_field: str,
    label_field: str,
    k: int | None,
    compare: bool,
    llm_url: str | None,
    llm_model: str | None,
) -> None:
    """Score the workspace on a labeled FILE: accuracy, macro-F1, ECE, per label, confusion."""
    from rich.console import Console

    from fewshot.cli.render import compare_table, eval_table

    workspace, llm = open_workspace(ctx), llm_settings(llm_url, llm_model)
    if compare:
        if plot:
            raise click.UsageError("--plot draws one stage; leave it out with --compare.")
        reports = [r.to_dict() for r in workspace.compare(file, text_field, label_field, k, llm)]
        if fmt == "json":
            click.echo(json.dumps(reports, ensure_ascii=False, indent=2))
        else:
            Console().print(compare_table(reports))
        return
    report = workspace.evaluate(file, text_field, label_field, k, plot, llm=llm).to_dict()
    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    Console().print(eval_table(report))
    if plot:
        click.echo(f"Wrote the confusion matrix and the reliability diagram to {plot}.")


__all__ = ["eval_"]
