"""Reading and writing labeled and unlabeled text files (CSV, TSV, JSONL, plain lines).

Every problem raises :class:`~fewshot.errors.DataError` naming the file and the line, and a
reader returns all rows or raises: callers never see half a file.

A labeled file may hold **label rows** besides its examples: ``{"kind": "label", "label":
NAME, "description": TEXT or null}`` (a CSV: a ``kind`` column holding ``label``), which
declare labels (``fewshot export`` writes them for the declared labels). The example readers
skip them; :func:`read_declared` reads them. A file of label rows only declares labels.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from fewshot.errors import ConflictError, DataError

LABELED_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
EXPORT_FORMATS = ("jsonl", "csv")


def clean_text(value: object, what: str, where: str) -> str:
    """Return ``value`` stripped of surrounding whitespace, or raise if it is not usable text.

    Args:
        value: The raw value (a str; an int is accepted for labels).
        what: ``"text"`` or ``"label"``, for the message.
        where: Where the value came from (``"file.csv, line 3"``), for the message.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: expected a string {what}, found {type(value).__name__}.")
    cleaned = str(value).strip()
    if not cleaned:
        raise DataError(
            f"{where}: the {what} is empty or only whitespace; give a non-empty {what}."
        )
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate: a JSON "\\ud800" or bytes in argv
        raise DataError(
            f"{where}: the {what} is not valid Unicode (a lone surrogate "
            f"U+{ord(cleaned[err.start]):04X} at character {err.start + 1}); give UTF-8 text."
        ) from err
    return cleaned


def format_of(path: Path, allowed: dict[str, str] = LABELED_FORMATS) -> str:
    """Return the format of ``path`` from its extension, or raise naming what is supported."""
    fmt = allowed.get(path.suffix.lower())
    if fmt is None:
        names = ", ".join(sorted(allowed))
        raise DataError(
            f"{path}: unknown file format '{path.suffix or '(no extension)'}'; "
            f"expected one of {names}."
        )
    return fmt


def read_text_file(path: Path) -> str:
    """Read ``path`` as UTF-8 (a BOM is allowed), naming the line of any invalid byte."""
    if not path.exists():
        raise DataError(f"{path}: no such file.")
    if not path.is_file():
        raise DataError(f"{path}: expected a file, found a directory or special file.")
    return decode(path.read_bytes(), str(path))


def decode(raw: bytes, where: str) -> str:
    """Return ``raw`` decoded as UTF-8 without a leading BOM, naming the line of a bad byte.

    Files and stdin are both read through here, so they accept and refuse the same bytes.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{where}, line {line}: invalid UTF-8 (byte 0x{raw[err.start]:02x}); "
            f"{'send the text' if where == 'stdin' else 'save the file'} as UTF-8."
        ) from err


def read_stdin(stream: IO[bytes]) -> list[str]:
    """Return the texts of a binary ``stream`` (stdin), one a line, as for a text file."""
    return parse_lines(split_lines(decode(stream.read(), "stdin")))


def split_lines(content: str) -> list[str]:
    r"""Split ``content`` at ``\n``, ``\r\n`` or ``\r`` only (not at U+2028, form feeds...)."""
    return content.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row dict) for a CSV, TSV or JSONL file."""
    content = read_text_file(path)
    if fmt == "jsonl":
        # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and others,
        # which json.dumps(ensure_ascii=False) leaves raw inside strings.
        for number, line in enumerate(content.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not valid JSON ({err.msg}).") from err
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}, line {number}: expected a JSON object, found {type(row).__name__}."
                )
            yield number, row
        return
    reader = csv.DictReader(
        io.StringIO(content, newline=""), delimiter="\t" if fmt == "tsv" else ","
    )
    try:
        for row in reader:
            if None in row:  # csv.DictReader keeps the fields past the header under None
                header = len(reader.fieldnames or ())
                raise DataError(
                    f"{path}, line {reader.line_num}: {header + len(row[None])} fields but "
                    f"the header has {header}; quote a field that contains "
                    f'{"a tab" if fmt == "tsv" else "a comma"} ("...").'
                )
            yield reader.line_num, row
    except csv.Error as err:
        raise DataError(
            f"{path}, line {reader.line_num}: malformed {fmt.upper()} ({err})."
        ) from err


def _field(path: Path, number: int, row: dict[str, Any], name: str, what: str) -> str:
    where = f"{path}, line {number}"
    if name in row and row[name] is None:  # a CSV row with too few fields, or a JSON null
        raise DataError(
            f"{where}: expected a {what} under '{name}', found none (a row with too few "
            f"fields, or null); give every row a {what}."
        )
    if name not in row:
        found = ", ".join(repr(k) for k in row if k is not None) or "none"
        raise DataError(
            f"{where}: no '{name}' {'column' if what else 'field'} (found {found}); "
            f"name it with --{what}-field."
        )
    return clean_text(row[name], what, where)


def _empty(row: dict[str, Any], name: str, fmt: str) -> bool:
    """Whether ``row`` has an empty ``name`` field (JSONL: also null; CSV: not a short row)."""
    if name not in row or (row[name] is None and fmt != "jsonl"):
        return False
    return row[name] is None or (isinstance(row[name], str) and not row[name].strip())


def read_labeled(
    path: Path, text_field: str = "text", label_field: str = "label", empty_label: bool = False
) -> list[tuple[str, str, int]]:
    """Read a labeled CSV / TSV / JSONL file.

    Args:
        path: The file.
        text_field: The text column.
        label_field: The label column.
        empty_label: Read an empty (or null) label as ``""`` (``eval``: an out-of-scope row)
            instead of refusing it.

    Returns:
        ``(text, label, line)`` for every row, in file order.

    Raises:
        DataError: For a missing file, an unknown format, a missing column, a broken line,
            invalid UTF-8, or an empty text or label; nothing is returned then.
    """
    fmt = format_of(path)
    every = list(_rows(path, fmt))
    rows = [
        (
            _field(path, number, row, text_field, "text"),
            ""
            if empty_label and _empty(row, label_field, fmt)
            else _field(path, number, row, label_field, "label"),
            number,
        )
        for number, row in every
        if not is_label_row(row)
    ]
    if not every:
        raise DataError(f"{path}: no rows found; expected a header and at least one example.")
    check_one_label_per_text([(text, label, f"{path}, line {n}") for text, label, n in rows])
    return rows


def is_label_row(row: dict[str, Any]) -> bool:
    """Whether a row declares a label (``kind`` is ``label``) rather than being an example."""
    return row.get("kind") == "label"


def read_declared(path: Path, label_field: str = "label") -> list[tuple[str, str | None, int]]:
    """Return ``(name, description or None, line)`` of each label row of a labeled file.

    Raises:
        DataError: For a label row with no name, a description that is not text, or a label
            declared twice with two descriptions.
    """
    found: dict[str, tuple[str | None, int]] = {}
    for number, row in _rows(path, format_of(path)):
        if not is_label_row(row):
            continue
        where = f"{path}, line {number}"
        name = _field(path, number, row, label_field, "label")
        description = row.get("description")
        if description is not None and not isinstance(description, str):
            raise DataError(
                f"{where}: expected a string description, found {type(description).__name__}."
            )
        text = clean_text(description, "description", where) if description else None
        first = found.setdefault(name, (text, number))
        if first[0] != text:
            raise DataError(
                f"{where}: label '{name}' is declared here with another description than at "
                f"line {first[1]}; declare each label once."
            )
    return [(name, text, number) for name, (text, number) in found.items()]


def check_one_label_per_text(rows: Iterable[tuple[str, str, str]]) -> None:
    """Raise if one text has two labels among ``(text, label, where)`` rows; repeats are fine."""
    seen: dict[str, tuple[str, str]] = {}
    for text, label, where in rows:
        first = seen.setdefault(text, (label, where))
        if first[0] != label:
            raise ConflictError(
                f"{where}: this text is labeled '{label}' here but '{first[0]}' at "
                f"{first[1]}; give each text one label."
            )


def read_texts(path: Path, text_field: str = "text") -> list[str]:
    """Read unlabeled texts: CSV / TSV / JSONL by ``text_field``, otherwise one text per line.

    Blank lines of a plain text file are skipped.
    """
    fmt = LABELED_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return parse_lines(split_lines(read_text_file(path)))
    return [_field(path, number, row, text_field, "text") for number, row in _rows(path, fmt)]


def parse_lines(lines: Iterable[str]) -> list[str]:
    """Return the non-blank lines, stripped: the plain one-text-per-line format."""
    return [line.strip() for line in lines if line.strip()]


def write_labeled(rows: Iterable[dict[str, Any]], fmt: str, stream: io.TextIOBase | Any) -> None:
    """Write labeled rows (dicts with at least ``text`` and ``label``) as JSONL or CSV.

    Both formats are lossless for any text (commas, quotes, newlines, non-ASCII) and are
    read back by :func:`read_labeled`.
    """
    if fmt == "jsonl":
        write_jsonl(rows, stream)
    elif fmt == "csv":
        rows = list(rows)
        if rows:  # every column of every row, the examples' first (label rows add some)
            ordered = sorted(rows, key=is_label_row)
            write_csv(rows, list(dict.fromkeys(key for row in ordered for key in row)), stream)
    else:
        raise DataError(
            f"unknown export format '{fmt}'; expected one of {', '.join(EXPORT_FORMATS)}."
        )


def write_csv(rows: Iterable[dict[str, Any]], columns: list[str], stream: Any) -> None:
    r"""Write ``rows`` as CSV lines ending in ``\n``, a header first; any text reads back whole.

    The csv module quotes a field holding the delimiter, a quote or ``\n`` but not a lone
    ``\r``, which a reader takes for a line end: a row holding one is written all quoted.
    """
    plain = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    quoted = csv.DictWriter(stream, columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writeheader()
    for row in rows:
        (quoted if any("\r" in str(value) for value in row.values()) else plain).writerow(row)


def write_jsonl(rows: Iterable[dict[str, Any]], stream: io.TextIOBase | Any) -> None:
    """Write one JSON object a line (UTF-8 as it is, no ASCII escapes)."""
    for row in rows:
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
