"""The ``fewshot`` command line: parse, call one API function, render. No logic here.

Heavy libraries are imported inside the commands, so ``fewshot --help`` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from fewshot.cli.render import FORMATS, closed_pipe, flushed
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


def _open(ctx: click.Context, create: bool = False) -> Workspace:
    from fewshot.workspace import Workspace

    workspace = Workspace.open(ctx.obj["store"], create=create)
    ctx.call_on_close(workspace.close)
    return workspace


def _progress() -> bool:
    return sys.stderr.isatty()


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
        click.echo("SetFit training started in the background (see `fewshot status`).")
    elif result.training is not None:
        click.echo(trained_message(result.training))


@cli.command()
@click.option("--label", "-l", required=True, help="The label of the texts.")
@click.option(
    "--relabel", is_flag=True, help="Change the label of texts already labeled otherwise."
)
@click.argument("texts", nargs=-1, required=True)
@click.pass_context
def add(ctx: click.Context, label: str, relabel: bool, texts: tuple[str, ...]) -> None:
    """Add TEXTS with LABEL (`-` reads one text per line from stdin)."""
    from fewshot.dataio import clean_text, read_stdin
    from fewshot.workspace import labeled_rows

    items = read_stdin(sys.stdin.buffer) if texts == ("-",) else list(texts)
    clean_text(label, "label", "--label")
    rows = labeled_rows(items, label)  # checked before anything is created
    workspace = _open(ctx, create=True)
    result = workspace.add_rows(rows, "add", relabel=relabel, progress=_progress())
    _report(result, workspace)


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option(
    "--relabel", is_flag=True, help="Change the label of texts already labeled otherwise."
)
@click.pass_context
def import_(
    ctx: click.Context, file: str, text_field: str, label_field: str, relabel: bool
) -> None:
    """Import a labeled CSV, TSV or JSONL file (all rows or none)."""
    from fewshot.workspace import file_rows

    path = _path(file)
    rows = file_rows(path, text_field, label_field)  # read once, checked before creating
    workspace = _open(ctx, create=True)
    result = workspace.add_rows(rows, f"import:{path.name}", relabel=relabel, progress=_progress())
    _report(result, workspace)


def _path(file: str) -> Any:
    from pathlib import Path

    return Path(file)


def _llm_options(command: Any) -> Any:
    """Add --llm-url and --llm-model (they win over FEWSHOT_LLM_* and the workspace's)."""
    url = click.option(
        "--llm-url",
        metavar="URL",
        help="OpenAI-compatible server: base URL (http://localhost:11434/v1) or its endpoint.",
    )
    model = click.option("--llm-model", metavar="NAME", help="Model name on that server.")
    return url(model(command))


def _llm(url: str | None, model: str | None) -> Any:
    from fewshot.backends.base import LLMSettings

    return LLMSettings(url=url, model=model)


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
@_llm_options
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
) -> None:
    """Classify TEXTS (or the texts of --input): label, confidence, stage, scores."""
    from fewshot.dataio import read_stdin, read_texts

    items = list(texts)
    if input_file == "-":
        items += read_stdin(sys.stdin.buffer)
    elif input_file:
        items += read_texts(_path(input_file), text_field)
    if not items:
        raise click.UsageError("give TEXT arguments or --input FILE (- for stdin).")
    llm = _llm(llm_url, llm_model)
    predictions = _open(ctx).classify(items, k=k, explain=explain, progress=_progress(), llm=llm)
    _render([p.to_dict() for p in predictions], fmt)


def _render(records: list[dict[str, Any]], fmt: str | None) -> None:
    from fewshot.cli.render import predictions_table, write_records

    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt == "table":
        from rich.console import Console

        Console().print(predictions_table(records))
    else:
        write_records(records, fmt, sys.stdout)


@cli.command()
@click.argument("text")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--k", type=click.IntRange(min=1), default=None, help="Demonstrations (default 10).")
@_llm_options
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
    shown = _open(ctx).prompt(text, k=k, llm=_llm(llm_url, llm_model))
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
    workspace = _open(ctx)
    if key is not None:
        workspace.config(key, value, unset)
    listing = workspace.settings_listing()
    shown = [v for v in listing if key is None or v.key == key]
    if fmt == "json":
        click.echo(json.dumps([v.to_dict() for v in shown], ensure_ascii=False, indent=2))
        return
    from fewshot.cli.render import settings_lines

    click.echo(settings_lines(shown))


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show the examples per label, the serving stage and the models."""
    info = _open(ctx).status()
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

    write_labeled(_open(ctx).export_rows(), fmt, sys.stdout)


@cli.command(name="eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the confusion matrix as PNG.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=None, help="Neighbours that vote.")
@click.pass_context
def eval_(
    ctx: click.Context,
    file: str,
    fmt: str,
    plot: str | None,
    text_field: str,
    label_field: str,
    k: int | None,
) -> None:
    """Score the workspace on a labeled FILE: accuracy, macro-F1, per label, confusion."""
    report = _open(ctx).evaluate(file, text_field, label_field, k=k, plot=plot).to_dict()
    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from fewshot.cli.render import eval_table

    Console().print(eval_table(report))
    if plot:
        click.echo(f"Wrote the confusion matrix to {plot}.")


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

    texts = read_texts(_path(file), text_field)  # read once, checked before creating
    if not texts:
        raise DataError(f"{file}: no texts found; expected one text per line (or rows).")
    workspace = _open(ctx, create=True)
    label_file(workspace, texts, file, TerminalScreen(), order, random_state, retry_skipped)


@cli.command()
@click.option("--force", is_flag=True, help="Train even when no new labels call for it.")
@click.pass_context
def train(ctx: click.Context, force: bool) -> None:
    """Train a SetFit model now (normally automatic); it serves only if it wins the gate."""
    from fewshot.cli.render import trained_message

    report = _open(ctx).train(force=force, progress=_progress())
    if report is None:
        click.echo("No training is due (see `fewshot status`); --force trains anyway.")
    else:
        click.echo(trained_message(report))


@cli.command()
@click.argument("version", type=int, required=False)
@click.pass_context
def rollback(ctx: click.Context, version: int | None) -> None:
    """Serve model VERSION, or step back to the previous version (or to retrieval)."""
    serving = _open(ctx).rollback(version)
    click.echo("Now serving: retrieval." if serving is None else f"Now serving: v{serving}.")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fewshot")
