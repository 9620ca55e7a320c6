"""The ``fewshot`` command line: parse, call one API function, render. No logic here.

Heavy libraries are imported inside the commands, so ``fewshot --help`` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from fewshot.cli.base import (
    FORMATS,
    as_path,
    llm_options,
    llm_settings,
    open_workspace,
    progress,
    render,
)
from fewshot.cli.bulk import bulk_options, classify_to_file
from fewshot.cli.labels import COMMANDS as LABEL_COMMANDS
from fewshot.cli.measure import eval_
from fewshot.cli.render import closed_pipe, flushed
from fewshot.cli.serve import serve
from fewshot.cli.training import add_mode, rollback, train, wait_option
from fewshot.errors import FewshotError

if TYPE_CHECKING:
    from fewshot.workspace import Workspace


class _Group(click.Group):
    """Turns :class:`FewshotError` and ``OSError`` into ``Error: ...`` (exit 1, no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return flushed(super().invoke(ctx))
        except BrokenPipeError:  # `fewshot export | head -1`: the reader has what it wanted
            ctx.exit(closed_pipe())
        except FewshotError as err:
            if os.environ.get("FEWSHOT_DEBUG"):
                raise
            raise click.ClickException(str(err)) from err
        except OSError as err:  # a path the system refuses: not a directory, no permission...
            if os.environ.get("FEWSHOT_DEBUG"):
                raise
            where = f" '{err.filename}'" if err.filename else ""
            raise click.ClickException(
                f"cannot read or write{where}: {err.strerror or err}; check the path given to "
                "--store (or FEWSHOT_STORE) and its permissions."
            ) from err


@click.group(cls=_Group)
@click.option(
    "--store",
    type=click.Path(file_okay=True, dir_okay=True),
    envvar="FEWSHOT_STORE",
    help="Workspace directory (default ./index, or $FEWSHOT_STORE).",
)
@click.version_option(package_name="fewshot")
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """Classify text from a few labeled examples; the classifier grows with its labels."""
    ctx.obj = {"store": store}


@cli.command()
@click.option("--model", default=None, help="sentence-transformers model name or local path.")
@click.option(
    "--min-per-label",
    type=click.IntRange(min=1),
    default=None,
    help="SetFit threshold (default 8).",
)
@click.pass_context
def init(ctx: click.Context, model: str | None, min_per_label: int | None) -> None:
    """Create a workspace."""
    from fewshot.workspace import Workspace

    options = {
        k: v for k, v in {"model": model, "min_per_label": min_per_label}.items() if v is not None
    }
    with Workspace.create(ctx.obj["store"], **options) as workspace:  # type: ignore[arg-type]
        click.echo(f"Created a workspace in {workspace.path} (encoder {workspace.model}).")


def _report(result: Any, workspace: Workspace) -> None:
    from fewshot.cli.render import added_message, trained_message

    click.echo(added_message(result, workspace.path, workspace.corpus.count()))
    if result.training == "background":
        click.echo(
            "SetFit training started in the background (see `fewshot status`; "
            "`fewshot train --wait` waits for it)."
        )
    elif result.training is not None:
        click.echo(trained_message(result.training))


@cli.command()
@click.option("--label", "-l", required=True, help="The label of the texts.")
@click.option(
    "--relabel", is_flag=True, help="Change the label of texts already labeled otherwise."
)
@wait_option
@click.argument("texts", nargs=-1, required=True)
@click.pass_context
def add(ctx: click.Context, label: str, relabel: bool, wait: bool, texts: tuple[str, ...]) -> None:
    """Add TEXTS with LABEL (`-` reads one text per line from stdin)."""
    from fewshot.corpus import labeled_rows
    from fewshot.dataio import clean_text, read_stdin

    items = read_stdin(sys.stdin.buffer) if texts == ("-",) else list(texts)
    clean_text(label, "label", "--label")
    rows = labeled_rows(items, label)  # checked before anything is created
    workspace = open_workspace(ctx, create=True)
    mode = add_mode(workspace, wait)
    result = workspace.add_rows(rows, "add", relabel=relabel, progress=progress(), train=mode)
    _report(result, workspace)


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option(
    "--relabel", is_flag=True, help="Change the label of texts already labeled otherwise."
)
@wait_option
@click.pass_context
def import_(
    ctx: click.Context, file: str, text_field: str, label_field: str, relabel: bool, wait: bool
) -> None:
    """Import a labeled CSV, TSV or JSONL file (all rows or none; label rows declare labels)."""
    from fewshot.corpus import file_rows
    from fewshot.labelset import file_labels

    file_path = as_path(file)
    rows = file_rows(file_path, text_field, label_field)  # read once, checked before creating
    declared = file_labels(file_path, label_field)
    workspace = open_workspace(ctx, create=True)
    source, mode = f"import:{file_path.name}", add_mode(workspace, wait)
    result = workspace.add_rows(rows, source, relabel=relabel, progress=progress(), train=mode)
    if declared:
        click.echo(f"Declared {workspace.declare_labels(declared)} new or changed label(s).")
    _report(result, workspace)


@cli.command()
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_file",
    help="Read texts from FILE (one per line, CSV, TSV or JSONL); - for stdin.",
)
@click.option(
    "--text-field", default="text", show_default=True, help="Text column of a CSV/TSV/JSONL input."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format (table on a terminal, else jsonl).",
)
@click.option("--explain", is_flag=True, help="Include the nearest labeled examples.")
@click.option(
    "--k", type=click.IntRange(min=1), default=None, help="Neighbours that vote (default 10)."
)
@llm_options
@bulk_options
@click.pass_context
def classify(
    ctx: click.Context,
    texts: tuple[str, ...],
    input_file: str | None,
    text_field: str,
    fmt: str | None,
    explain: bool,
    k: int | None,
    llm_url: str | None,
    llm_model: str | None,
    output: str | None,
    engine: str,
    num_workers: int,
    batch_size: int,
    num_gpus: float,
) -> None:
    """Classify TEXTS (or the texts of --input): label, confidence, stage, scores.

    With --output FILE, the rows of --input are written there with the answers added
    (Parquet, CSV or JSONL; --engine ray runs them on Ray Data).
    """
    from fewshot.dataio import read_stdin, read_texts

    if output:
        if explain or fmt:
            raise click.UsageError("--explain and --format print records; not with --output.")
        options = {"engine": engine, "num_workers": num_workers, "batch_size": batch_size}
        options |= {"num_gpus": num_gpus, "k": k, "llm": llm_settings(llm_url, llm_model)}
        classify_to_file(ctx, texts, input_file, output, text_field, options)
        return
    if engine == "ray":
        raise click.UsageError("--engine ray writes a table: give --output FILE.")
    items = list(texts)
    if input_file == "-":
        items += read_stdin(sys.stdin.buffer)
    elif input_file:
        items += read_texts(as_path(input_file), text_field)
    if not items:
        raise click.UsageError("give TEXT arguments or --input FILE (- for stdin).")
    llm = llm_settings(llm_url, llm_model)
    predictions = open_workspace(ctx).classify(
        items, k=k, explain=explain, progress=progress(), llm=llm
    )
    render([p.to_dict() for p in predictions], fmt)


@cli.command()
@click.argument("text")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--k", type=click.IntRange(min=1), default=None, help="Demonstrations (default 10).")
@llm_options
@click.pass_context
def prompt(
    ctx: click.Context,
    text: str,
    fmt: str,
    k: int | None,
    llm_url: str | None,
    llm_model: str | None,
) -> None:
    """Print the few-shot prompt the LLM would get for TEXT (nothing is sent)."""
    shown = open_workspace(ctx).prompt(text, k=k, llm=llm_settings(llm_url, llm_model))
    if fmt == "json":
        click.echo(json.dumps(shown.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(shown.to_text())


@cli.command()
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.option("--unset", is_flag=True, help="Forget KEY's value (it reads as its default).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def config(ctx: click.Context, key: str | None, value: str | None, unset: bool, fmt: str) -> None:
    """Show or change settings: k, min_per_label, train, llm_url, prompt_k...

    `fewshot config` lists every setting with its value, default and source;
    `fewshot config KEY VALUE` sets one; `fewshot config KEY --unset` forgets it.
    """
    if unset and (key is None or value is not None):
        raise click.UsageError("--unset takes a KEY and no VALUE.")
    workspace = open_workspace(ctx)
    if key is not None:
        workspace.config(key, value, unset)
    listing = workspace.settings_listing()
    shown = [v for v in listing if key is None or v.key == key]
    if fmt == "json":
        click.echo(json.dumps([v.to_dict() for v in shown], ensure_ascii=False, indent=2))
        return
    from fewshot.cli.render import settings_lines
    from fewshot.settings import setting

    note = setting(key).note if key is not None and (value is not None or unset) else None
    click.echo(settings_lines(shown) + (f"\n{note}" if note else ""))


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show the examples per label, the serving stage and the models."""
    info = open_workspace(ctx).status()
    if fmt == "json":
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from fewshot.cli.render import status_table

    Console().print(status_table(info))


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.pass_context
def export(ctx: click.Context, fmt: str) -> None:
    """Write the labeled set to stdout, losslessly (re-importable)."""
    from fewshot.dataio import write_labeled

    write_labeled(open_workspace(ctx).export_rows(), fmt, sys.stdout)


cli.add_command(train)
cli.add_command(rollback)
cli.add_command(eval_)
cli.add_command(serve)
for _command in LABEL_COMMANDS:
    cli.add_command(_command)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--text-field", default="text", show_default=True, help="Text column of CSV/JSONL.")
@click.option(
    "--order",
    type=click.Choice(["uncertain", "diverse", "random", "file"]),
    default="uncertain",
    show_default=True,
    help="Which text comes next.",
)
@click.option(
    "--random-state", type=int, default=0, show_default=True, help="Seed of --order random."
)
@click.option("--retry-skipped", is_flag=True, help="Ask again for texts skipped earlier.")
@click.pass_context
def label(
    ctx: click.Context,
    file: str,
    text_field: str,
    order: str,
    random_state: int,
    retry_skipped: bool,
) -> None:
    """Label the texts of FILE interactively (one per line, or CSV/TSV/JSONL)."""
    from fewshot.cli.label_screen import TerminalScreen, label_file
    from fewshot.dataio import read_texts
    from fewshot.errors import DataError

    texts = read_texts(as_path(file), text_field)  # read once, checked before creating
    if not texts:
        raise DataError(f"{file}: no texts found; expected one text per line (or rows).")
    workspace = open_workspace(ctx, create=True)
    label_file(workspace, texts, file, TerminalScreen(), order, random_state, retry_skipped)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fewshot")
