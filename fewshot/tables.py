"""Tables in and out of bulk classification: Parquet, CSV and JSONL (and plain text in).

``fewshot classify --input FILE --output FILE`` keeps every input column and adds four:
``label`` (null when the text was refused), ``confidence``, ``stage`` and ``scores`` (the
per-label scores: a JSON object in JSONL, its JSON text in Parquet and CSV). The output is written
beside its final name and renamed into place when complete: a failed run leaves the old
file, or none, never half a table.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fewshot.dataio import _rows, clean_text, format_of, read_texts
from fewshot.errors import DataError
from fewshot.values import Prediction

TABLE_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
INPUT_FORMATS = {**TABLE_FORMATS, ".tsv": "tsv", ".txt": "text"}
ADDED = ("label", "confidence", "stage", "scores")
"""The columns classification adds, in this order."""


def added_columns(predictions: Sequence[Prediction]) -> dict[str, list[Any]]:
    """Return the four added columns for ``predictions`` (``scores`` as JSON text)."""
    return {
        "label": [p.label for p in predictions],
        "confidence": [round(float(p.confidence), 6) for p in predictions],
        "stage": [p.stage for p in predictions],
        "scores": [
            json.dumps({k: round(float(v), 6) for k, v in p.scores.items()}, ensure_ascii=False)
            for p in predictions
        ],
    }


def check_columns(names: Sequence[str], text_field: str, where: str) -> None:
    """Raise unless ``text_field`` is a column and none is named like an added one."""
    if text_field not in names:
        found = ", ".join(names) or "none"
        raise DataError(
            f"{where}: no column '{text_field}' (columns: {found}); name the text column with "
            "--text-field."
        )
    taken = [name for name in ADDED if name in names]
    if taken:
        raise DataError(
            f"{where}: already has column(s) {', '.join(taken)}, which classification adds; "
            "rename or drop them first (to score a labeled file, use `fewshot eval`)."
        )


def text_of(value: object, where: str) -> str:
    """Return a cell as cleaned text (a numpy scalar is read as its Python value)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return clean_text(value, "text", where)


def text_column(path: Path, text_field: str) -> str:
    """Return the column that holds the texts of ``path``: ``text`` for a plain text file."""
    return "text" if format_of(path, INPUT_FORMATS) == "text" else text_field


def read_rows(path: Path, text_field: str) -> list[dict[str, Any]]:
    """Read the rows of an input table (a text file: one ``text`` a line), checked.

    ``text_field`` is the text column (see :func:`text_column`); its cells are cleaned.
    """
    fmt = format_of(path, INPUT_FORMATS)
    text_field = text_column(path, text_field)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        names = pq.read_schema(path).names
    elif fmt == "text":
        rows = [{"text": text} for text in read_texts(path)]
        names = ["text"]
    else:
        texts = read_texts(path, text_field)  # checks every row, with its line number
        rows = [dict(row) for _, row in _rows(path, fmt)]
        names = list(dict.fromkeys(key for row in rows for key in row)) if rows else [text_field]
        for row, text in zip(rows, texts):
            row[text_field] = text
    check_columns(names, text_field, str(path))
    for number, row in enumerate(rows, start=1):
        row[text_field] = text_of(row.get(text_field), f"{path}, row {number}")
    return rows


def schema_of(rows: list[dict[str, Any]], where: str) -> Any:
    """Return the pyarrow schema of ``rows``, every row considered (for a Parquet output)."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(f"{where}: a column holds values of different types: {err}") from err


class TableWriter:
    """Writes batches of rows to ``path`` (format from its extension), atomically.

    Use as a context manager: the rows go to a hidden file beside ``path``, renamed to it
    when the block ends without an error and removed when it raises.

    Args:
        path: The output file.
        schema: For Parquet, the input columns' pyarrow schema (default: the first batch's).
            A column that is null throughout the first batch is written as text.
    """

    def __init__(self, path: Path, schema: Any = None) -> None:
        self.path = path
        self.schema = schema
        self.format = format_of(path, TABLE_FORMATS)
        if not path.parent.is_dir():
            raise DataError(f"{path}: the directory {path.parent} does not exist.")
        self._temp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        self._stream: Any = None
        self._writer: Any = None
        self._columns: list[str] | None = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        if self.format != "parquet":
            self._stream = self._temp.open("w", encoding="utf-8", newline="")
        return self

    def write(self, columns: dict[str, list[Any]]) -> None:
        """Append rows given as columns (all of the same length)."""
        names = list(columns)
        count = len(columns[names[0]]) if names else 0
        if self._columns is None:
            self._columns = names
        if self.format == "parquet":
            self._write_parquet(columns)
        else:
            rows = ({name: columns[name][i] for name in self._columns} for i in range(count))
            if self.format == "jsonl":  # a JSON record holds the scores as an object
                for row in rows:
                    row["scores"] = json.loads(row["scores"])
                    self._stream.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            else:
                self._write_csv(rows)
        self.rows += count

    def write_table(self, table: Any) -> None:
        """Append the rows of a pyarrow table."""
        if self.format == "parquet":
            if self._columns is None:
                self._columns = list(table.column_names)
            self._write_parquet(table)
            self.rows += table.num_rows
        else:
            self.write(table.to_pydict())

    def _write_parquet(self, columns: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = columns if isinstance(columns, pa.Table) else pa.table(columns)
        if self._writer is None:
            known = self.schema if self.schema is not None else table.schema
            fields = {f.name: f for f in known}
            schema = pa.schema([_output_field(fields.get(f.name, f)) for f in table.schema])
            self._writer = pq.ParquetWriter(self._temp, schema)
        try:
            table = table.select(self._writer.schema.names).cast(self._writer.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as err:
            where = f"{self.path}: the input's columns change type across rows"
            raise DataError(f"{where}: {err}") from err
        self._writer.write_table(table)

    def _write_csv(self, rows: Iterator[dict[str, Any]]) -> None:
        assert self._columns is not None
        plain = csv.DictWriter(self._stream, fieldnames=self._columns, lineterminator="\n")
        quoted = csv.DictWriter(
            self._stream, self._columns, lineterminator="\n", quoting=csv.QUOTE_ALL
        )
        if self.rows == 0:
            plain.writeheader()
        for row in rows:
            (quoted if any("\r" in str(v) for v in row.values()) else plain).writerow(row)

    def __exit__(self, kind: object, *rest: object) -> None:
        done = False
        try:
            if self._stream is not None:
                self._stream.close()
            if self._writer is not None:
                self._writer.close()
            if kind is None and self.rows == 0 and self.format == "parquet":
                raise DataError(f"{self.path}: nothing to write (the input has no rows).")
            if kind is None:
                os.replace(self._temp, self.path)
                done = True
        finally:
            if not done:
                self._temp.unlink(missing_ok=True)


def _output_field(field: Any) -> Any:
    """Return how ``field`` is written: an added column with its type; all-null as text."""
    import pyarrow as pa

    if field.name in ADDED:
        return pa.field(field.name, _ADDED_TYPES[field.name]())
    if pa.types.is_null(field.type):
        return pa.field(field.name, pa.string())
    return field


def _string() -> Any:
    import pyarrow as pa

    return pa.string()


def _float() -> Any:
    import pyarrow as pa

    return pa.float64()


_ADDED_TYPES = {"label": _string, "confidence": _float, "stage": _string, "scores": _string}

__all__ = [
    "ADDED",
    "INPUT_FORMATS",
    "TABLE_FORMATS",
    "TableWriter",
    "added_columns",
    "check_columns",
    "read_rows",
    "schema_of",
    "text_column",
    "text_of",
]
