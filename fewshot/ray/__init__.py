"""Bulk classification on Ray Data: :func:`classify_dataset`, and ``classify --engine ray``.

The labeled set is small and the corpus is not, so the corpus is what spreads out. The
driver opens the workspace, checks what it is asked, and takes a read-only snapshot of what
answers (:mod:`fewshot.ray.snapshot`); Ray Data's ``map_batches`` runs
:class:`fewshot.ray.actor.Classifier` on a pool of actors, each of which loads the snapshot
once and answers batch after batch with the same code as a local ``classify``, so the
labels are the same. What scales with workers: reading the input, encoding, the vote, the
SetFit head. What stays on the driver: the snapshot (one copy of the database and of the
serving model), and, with ``classify --output FILE``, writing the one output file in input
order (:func:`classify_file`); to write a directory of Parquet files from the workers
instead, call :func:`classify_dataset` and ``.write_parquet(...)`` on the result.

A killed actor is restarted by Ray and its batch run again (Ray Data's default for actor
pools), so every input row is answered exactly once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot import errors
from fewshot.errors import ConfigError, FewshotError, MissingExtraError, WorkspaceError
from fewshot.tables import INPUT_FORMATS, TableWriter, check_columns, text_column
from fewshot.tasks.answer import LLMChoice, require_answerable

if TYPE_CHECKING:
    from ray.data import Dataset

ENV_PREFIXES = ("FEWSHOT_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_")
"""Environment variables the actors get from the driver (LLM settings, offline switches)."""


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise MissingExtraError("ray", "ray", "classification on Ray Data") from err
    return ray


def classify_dataset(
    ds: Dataset,
    store: str | os.PathLike[str] | None = None,
    text_field: str = "text",
    *,
    k: int | None = None,
    llm: LLMChoice = None,
    num_workers: int = 1,
    batch_size: int = 256,
    num_gpus: float = 0.0,
) -> Dataset:
    """Return ``ds`` with ``label``, ``confidence``, ``stage`` and ``scores`` (JSON) added.

    Lazy, as Ray Data is: nothing runs until the result is consumed or written. The rows
    come out in input order only with ``DataContext.get_current().execution_options
    .preserve_order = True`` (as :func:`classify_file` sets); the text column comes out
    cleaned (stripped), as a local ``classify --output`` writes it.

    Args:
        ds: The rows to classify; ``text_field`` holds the texts.
        store: The workspace (default ``./index`` or ``$FEWSHOT_STORE``). The driver opens
            it as a local ``classify`` does (an older schema is brought up to date) and only
            reads it; the workers get a copy (:mod:`fewshot.ray.snapshot`).
        text_field: The text column.
        k: Neighbours that vote (default: the workspace's setting).
        llm: As for :meth:`fewshot.workspace.Workspace.classify`.
        num_workers: Actors in the pool (Ray's ``ActorPoolStrategy(size=...)``).
        batch_size: Rows per call of an actor.
        num_gpus: GPUs per actor (set ``FEWSHOT_DEVICE=cuda`` for the encoder to use one).

    Raises:
        ConfigError: If a number is out of range or the setting ``stage`` is unknown.
        DataError: If ``text_field`` is missing or an added column already exists.
        WorkspaceError: If there is no workspace, or nothing to answer with yet.
    """
    from fewshot.ray import snapshot
    from fewshot.ray.actor import Classifier
    from fewshot.workspace import Workspace

    ray = _ray()
    for name, value, least in (("num_workers", num_workers, 1), ("batch_size", batch_size, 1)):
        if value < least:
            raise ConfigError(f"{name} must be at least {least}, got {value}.")
    if k is not None and k < 1:
        raise ConfigError(f"k must be at least 1, got {k}.")
    check_columns(list(ds.columns()), text_field, "the dataset")
    with Workspace.open(store) as workspace:  # as a local classify opens it
        require_answerable(workspace.corpus)
        chosen = str(workspace.settings.values()["stage"])  # who answers: `fewshot config stage`
        files = snapshot.take(workspace, chosen)
    env = {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIXES)}
    blocks = ds.repartition(target_num_rows_per_block=batch_size)  # spread over the pool
    labeled: Dataset = blocks.map_batches(
        Classifier,
        fn_constructor_kwargs={
            "files": [ray.put(files)],
            "text_field": text_field,
            "k": k,
            "stage": chosen,
            "llm": llm,
        },
        batch_size=batch_size,
        batch_format="pyarrow",  # the other columns pass through with their types
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=1,
        num_gpus=num_gpus or None,
        runtime_env={"env_vars": env},
    )
    return labeled


def start(num_workers: int = 1) -> None:
    """Connect to ``$RAY_ADDRESS``, or start a local Ray with room for the pool and a reader."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    cpus = None if address else max(os.cpu_count() or 1, num_workers + 1)
    ray.init(
        address=address,
        num_cpus=cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notices are not the user's


def read(path: Path, text_field: str = "text") -> Dataset:
    """Read a Parquet, CSV, TSV, JSONL or plain text file (one text a line) as a Dataset.

    CSV and TSV cells are read as text, as a local ``classify --output`` reads them; a plain
    text file is read on the driver, with the local rules (blank lines skipped).
    """
    from fewshot.dataio import format_of, read_texts

    ray = _ray()
    fmt = format_of(path, INPUT_FORMATS)
    if not path.is_file():
        raise WorkspaceError(f"{path}: no such file.")
    where = str(path)
    ds: Dataset
    if fmt == "parquet":
        ds = ray.data.read_parquet(where, file_extensions=None)
    elif fmt in ("csv", "tsv"):
        import pyarrow as pa
        import pyarrow.csv

        delimiter = "," if fmt == "csv" else "\t"
        options = pyarrow.csv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
        text = {name: pa.string() for name in _header(path, delimiter) or [text_field]}
        types = pyarrow.csv.ConvertOptions(column_types=text)
        ds = ray.data.read_csv(
            where, parse_options=options, convert_options=types, file_extensions=None
        )
    elif fmt == "jsonl":
        ds = ray.data.read_json(where, file_extensions=None)
    else:
        ds = ray.data.from_items([{"text": text} for text in read_texts(path)])
    return ds


def _header(path: Path, delimiter: str) -> list[str]:
    """Return the column names on the first line of a CSV or TSV file."""
    import csv

    with path.open(encoding="utf-8-sig", newline="") as stream:
        return next(csv.reader(stream, delimiter=delimiter), [])


def classify_file(
    source: Path,
    output: Path,
    store: str | os.PathLike[str] | None = None,
    text_field: str = "text",
    progress: bool = False,
    **options: Any,
) -> int:
    """Classify the rows of ``source`` on Ray and write them, in order, to ``output``.

    ``options`` are :func:`classify_dataset`'s. Returns the number of rows written.

    Raises:
        FewshotError: For bad input, or the failure of a worker (its message, no traceback).
    """
    if output.resolve() == source.resolve():
        raise ConfigError(f"{output}: --output is the --input file; write somewhere else.")
    writer = TableWriter(output)  # a bad output name fails before Ray starts
    field = text_column(source, text_field)
    try:
        start(int(options.get("num_workers", 1)))
        context = _ray().data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = progress
        ds = read(source, field)
        check_columns(list(ds.columns()), field, str(source))
        labeled = classify_dataset(ds, store, field, **options)
        with writer:
            for batch in _batches(labeled):
                writer.write_table(batch)
    except FewshotError:
        raise
    except Exception as err:  # a worker's failure arrives wrapped by Ray
        raise _explained(err) from err
    return writer.rows


def _batches(ds: Dataset) -> Iterator[dict[str, Any]]:
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


def _explained(err: BaseException) -> Exception:
    """Return the fewshot error behind a Ray failure, or one that names the failure."""
    if os.environ.get("FEWSHOT_DEBUG"):
        return err if isinstance(err, Exception) else RuntimeError(str(err))
    seen: BaseException | None = err
    for _ in range(20):  # follow Ray's wrappers down to what the worker raised
        if seen is None:
            break
        cause = getattr(seen, "cause", None)  # a RayTaskError holds the worker's exception
        if isinstance(cause, BaseException) and cause is not seen:
            seen = cause
        elif isinstance(seen, FewshotError):
            return seen
        else:
            seen = seen.__cause__ or seen.__context__
    # Ray Data passes a worker's exception on as the text of its traceback only.
    raised = re.search(r"fewshot\.errors\.(\w+): (.+)", _ANSI.sub("", str(err)))
    if raised is not None:
        kind = getattr(errors, raised.group(1), FewshotError)
        try:
            return kind(raised.group(2).strip())
        except TypeError:  # an error class with its own arguments
            return FewshotError(raised.group(2).strip())
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return WorkspaceError(f"the Ray job failed: {_ANSI.sub('', first)}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


__all__ = ["ENV_PREFIXES", "classify_dataset", "classify_file", "read", "start"]
