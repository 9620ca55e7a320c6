"""``classify --output FILE``: a table in, the same table with the answers out (local or Ray)."""

from __future__ import annotations

import sys
from typing import Any

import click

ENGINES = ("local", "ray")


def bulk_options(command: Any) -> Any:
    """Add --output, --engine, --num-workers, --batch-size and --num-gpus."""
    options = [
        click.option(
            "--output",
            metavar="FILE",
            help="Write the input's rows with label, confidence, stage, scores added "
            "(.parquet, .csv or .jsonl); written whole or not at all.",
        ),
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="local",
            show_default=True,
            help="Where --output's rows are answered: this process, or Ray Data "
            "(a local cluster, or $RAY_ADDRESS; needs fewshot[ray]).",
        ),
        click.option(
            "--num-workers",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Ray actors, each with one copy of the model.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="Texts per batch (Ray: per actor call).",
        ),
        click.option(
            "--num-gpus",
            type=click.FloatRange(min=0),
            default=0.0,
            help="GPUs per Ray actor (with FEWSHOT_DEVICE=cuda).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def classify_to_file(
    ctx: click.Context,
    texts: tuple[str, ...],
    input_file: str | None,
    output: str,
    text_field: str,
    options: dict[str, Any],
) -> None:
    """Answer the rows of ``--input`` (or ``texts``) and write them to ``output``."""
    from pathlib import Path

    if texts and input_file:
        raise click.UsageError("with --output, give TEXT arguments or --input FILE, not both.")
    if options["engine"] == "ray":
        if not input_file or input_file == "-":
            raise click.UsageError("--engine ray reads a file: give --input FILE (not stdin).")
        from fewshot.ray import classify_file

        rows = classify_file(
            Path(input_file),
            Path(output),
            ctx.obj["store"],
            text_field,
            progress=sys.stderr.isatty(),
            k=options["k"],
            llm=options["llm"],
            num_workers=options["num_workers"],
            batch_size=options["batch_size"],
            num_gpus=options["num_gpus"],
        )
    else:
        rows = _local(ctx, texts, input_file, Path(output), text_field, options)
    click.echo(f"Wrote {rows} row(s) to {output}.", err=True)


def _local(
    ctx: click.Context,
    texts: tuple[str, ...],
    input_file: str | None,
    output: Any,
    text_field: str,
    options: dict[str, Any],
) -> int:
    from pathlib import Path

    from fewshot.cli.base import open_workspace
    from fewshot.dataio import read_stdin
    from fewshot.tables import TableWriter, added_columns, read_rows, schema_of, text_column

    writer = TableWriter(output)  # a bad output name fails before anything is read
    if input_file and input_file != "-" and Path(input_file).resolve() == output.resolve():
        raise click.UsageError("--output is the --input file; write somewhere else.")
    if input_file and input_file != "-":
        text_field = text_column(Path(input_file), text_field)
        rows = read_rows(Path(input_file), text_field)
    else:
        text_field = "text"
        items = read_stdin(sys.stdin.buffer) if input_file == "-" else list(texts)
        rows = [{"text": text} for text in items]
    if not rows:
        raise click.UsageError("no texts to classify.")
    if writer.format == "parquet":  # the types of every row, not only the first batch's
        writer.schema = schema_of(rows, input_file or "the texts")
    workspace = open_workspace(ctx)
    size, names = options["batch_size"], list(dict.fromkeys(key for row in rows for key in row))
    with writer, click.progressbar(length=len(rows), file=sys.stderr) as bar:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            found = workspace.classify(
                [row[text_field] for row in chunk], k=options["k"], llm=options["llm"]
            )
            columns = {name: [row.get(name) for row in chunk] for name in names}
            writer.write({**columns, **added_columns(found)})
            bar.update(len(chunk))
    return writer.rows


__all__ = ["ENGINES", "bulk_options", "classify_to_file"]
