"""Property tests of every command's inputs (issue 14, "Fuzzing"), under hypothesis.

Each input either succeeds or fails with a clear `Error:` (exit 1, or 2 for a usage error;
no traceback) and changes nothing; export then import is lossless for whatever import
accepts. The CLI runs in-process (CliRunner), so the encoder loads once; texts are short
and files small, as encoding is the cost. Runs are seeded (``derandomize``): the bounded
budget below runs in `make test`, ``*_long`` variants (marked slow) run 10x more.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fewshot.cli import cli
from fewshot.dataio import read_labeled, read_texts
from fewshot.errors import DataError
from fewshot.prompt import ORDERS, SELECTIONS
from fewshot.settings import SETTINGS, TRAIN_MODES, parse
from fewshot.workspace import Workspace

# Examples per test in `make test` (the fuzz tests together take ~45 s on 2 busy cores); the
# slow variants run 10x as many.
READERS, IMPORTS, STDIN, CONFIGS, ROUND_TRIPS = 300, 50, 40, 150, 40
SEEDED = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}

# Text with what breaks readers: quotes, separators, every kind of newline, a BOM, NUL and
# other controls, separators Python's str.splitlines() knows, non-ASCII, lone surrogates.
TRICKY = [
    *',"\'\t\n\r \\;|{}[]:', "\ufeff", "\x00", "\x1b", "\x0b", "\x0c", "\x1c", "\x85",
    "\u2028", "\u2029", "\u202e", "\u200d", "é", "東", "👩", "\ud800", "\udcff",
]  # fmt: skip
SURROGATES = ("\ud800", "\udcff")
FIELD = st.text(st.one_of(st.sampled_from(TRICKY), st.characters()), max_size=12)
CLEAN_FIELD = st.text(  # no lone surrogate: what a UTF-8 file or stdin can hold
    st.one_of(
        st.sampled_from([c for c in TRICKY if c not in SURROGATES]), st.characters(codec="utf-8")
    ),
    max_size=12,
)
VISIBLE = st.characters(exclude_categories=("Z", "C"))  # never stripped as whitespace
NON_EMPTY = st.builds(lambda a, b, c: a + b + c, CLEAN_FIELD, VISIBLE, CLEAN_FIELD)
BAD_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate gives invalid UTF-8


@st.composite
def spoiled(draw: st.DrawFn, content: bytes) -> bytes:
    """``content`` with maybe a BOM in front and maybe (one in four) an invalid sequence inside."""
    if draw(st.booleans()):
        content = b"\xef\xbb\xbf" + content
    if draw(st.sampled_from([False, False, False, True])):
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(BAD_BYTES) + content[at:]
    return content


@st.composite
def delimited(draw: st.DrawFn, delimiter: str) -> bytes:
    """A CSV / TSV file: a header, then rows of 2 fields (or 0 to 4), some quoted, some not."""
    headers = ["text,label"] * 4 + ["label,text", "text", "text,label,extra", "x,y"]
    lines = [draw(st.sampled_from(headers)).replace(",", delimiter)]
    row = st.one_of(*[st.lists(NON_EMPTY, min_size=2, max_size=2)] * 3, st.lists(FIELD, max_size=4))
    rows = draw(st.lists(row, min_size=1, max_size=4))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):  # as a spreadsheet writes it: quoted wherever needed
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator=ending).writerows(rows)
        return draw(spoiled(encoded(lines[0] + ending + out.getvalue())))
    for fields in rows:  # by hand: some fields quoted, some not
        quoted = ['"' + f.replace('"', '""') + '"' if draw(st.booleans()) else f for f in fields]
        lines.append(delimiter.join(quoted))
    return draw(spoiled(encoded(ending.join(lines) + draw(st.sampled_from(["", ending])))))


JSON_VALUE = st.one_of(
    *[NON_EMPTY] * 4, FIELD, st.integers(), st.booleans(), st.none(), st.lists(st.integers())
)


@st.composite
def jsonl(draw: st.DrawFn) -> bytes:
    """A JSONL file: objects with text/label of any JSON type, escapes, broken lines."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["row", "row", "row", "escaped", "broken", "array", "blank"]))
        row = {"text": draw(JSON_VALUE), "label": draw(JSON_VALUE)}
        if kind == "row":
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
        elif kind == "escaped":  # a lone surrogate as a JSON escape: valid JSON, not UTF-8
            lines.append('{"text": "a\\ud800b", "label": "x"}')
        elif kind == "broken":
            lines.append(json.dumps(row)[: draw(st.integers(0, 10))])
        elif kind == "array":
            lines.append(json.dumps([row]))
        else:
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))
    return draw(spoiled(encoded("\n".join(lines))))


def plain() -> st.SearchStrategy[bytes]:
    """A one-text-per-line file (or stdin)."""
    lines = st.lists(st.one_of(NON_EMPTY, FIELD), max_size=4)
    return lines.map(lambda xs: encoded("\n".join(xs))).flatmap(spoiled)


FILES = {".csv": delimited(","), ".tsv": delimited("\t"), ".jsonl": jsonl(), ".txt": plain()}
ANY_FILE = st.one_of(
    st.tuples(st.sampled_from(sorted(FILES)), st.binary(max_size=200)),
    *(st.tuples(st.just(ext), strategy) for ext, strategy in FILES.items()),
)


def both(examples: int, *args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], Any]:
    """Make a bounded test of ``examples`` seeded examples, and a slow one with 10x as many."""

    def make(body: Callable[..., None]) -> tuple[Any, Any]:
        fast = settings(max_examples=examples, **SEEDED)(given(*args, **kwargs)(body))
        slow = settings(max_examples=10 * examples, **SEEDED)(given(*args, **kwargs)(body))
        return fast, pytest.mark.slow(slow)

    return make


# -- the CLI, in-process ----------------------------------------------------------------


def cli_run(store: Path, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], input=stdin)


def ok_or_clear_error(result: Result) -> bool:
    """True for a success; for a failure, assert it is a clear `Error:` (no traceback)."""
    if result.exit_code == 0:
        return True
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a traceback
    assert result.exit_code in (1, 2), result.output
    assert "Error: " in result.stderr and "Traceback" not in result.stderr, result.stderr
    return False


def records(output: str) -> list[dict[str, Any]]:
    """The JSON Lines of ``output``: lines end at "\\n" only (a text may hold U+0085...)."""
    return [json.loads(line) for line in output.split("\n") if line]


def exported(store: Path, fmt: str = "jsonl") -> str:
    result = cli_run(store, "export", "--format", fmt)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode()  # .stdout would turn "\r\n" into "\n"


def settings_shown(store: Path) -> tuple[str, str]:
    table, listing = cli_run(store, "config"), cli_run(store, "config", "--format", "json")
    assert table.exit_code == 0 and listing.exit_code == 0, table.output + listing.output
    return table.stdout, listing.stdout


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Encode on one thread: many tiny batches run ~15x faster so on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small workspace (training off) that each example copies."""
    path = tmp_path_factory.mktemp("fuzz") / "ws"
    with Workspace.create(path) as ws:
        ws.config("train", "never")
        ws.add(["where is my parcel", "a", "é"], "shipping")
        ws.add(["refund me", '"quoted", text'], "refund")
        ws.memory()
    return path


@pytest.fixture(scope="module")
def before(template: Path) -> tuple[str, tuple[str, str]]:
    return exported(template), settings_shown(template)


@pytest.fixture
def fresh(template: Path) -> Callable[[], Iterator[Path]]:
    """A context that gives a fresh copy of the template for one example."""
    from contextlib import contextmanager

    @contextmanager
    def copy() -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "ws"
            shutil.copytree(template, store)
            yield store

    return copy


def unchanged(store: Path, before: tuple[str, tuple[str, str]]) -> None:
    assert exported(store) == before[0]
    assert settings_shown(store) == before[1]


# -- the file readers (no encoder: many examples) -----------------------------------------


def _readers(file: tuple[str, bytes]) -> None:
    ext, content = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{ext}"
        path.write_bytes(content)
        readers = [read_texts] if ext == ".txt" else [read_labeled, read_texts]
        for reader in readers:
            try:
                rows = reader(path)
            except DataError as err:
                assert str(err).startswith(str(path)), err  # names the file (and line)
                event(f"{ext} {reader.__name__}: Error")
                continue
            event(f"{ext} {reader.__name__}: {'rows' if rows else 'empty'}")
            for row in rows:
                values = [row] if isinstance(row, str) else list(row[:2])
                for value in values:
                    assert isinstance(value, str) and value == value.strip() and value
                    value.encode("utf-8")  # storable: no lone surrogate


test_file_readers_return_clean_rows_or_name_the_file, test_file_readers_long = both(
    READERS, ANY_FILE
)(_readers)


# -- import, add -, classify --input - (the encoder: few, small examples) ------------------


def _import(file: tuple[str, bytes], fresh: Any, before: Any) -> None:
    ext, content = file
    if ext == ".txt":
        ext = ".csv"
    with fresh() as store:
        path = store.parent / f"in{ext}"
        path.write_bytes(content)
        imported = ok_or_clear_error(cli_run(store, "import", str(path)))
        event(f"import {ext}: {'ok' if imported else 'Error'}")
        if imported:
            rows = records(exported(store))
            stored = {(r["text"], r["label"]) for r in rows}
            assert {(t, lab) for t, lab, _ in read_labeled(path)} <= stored
        else:
            unchanged(store, before)


test_import_succeeds_or_changes_nothing, test_import_long = both(IMPORTS, file=ANY_FILE)(_import)


def _stdin(data: bytes, label: str, fresh: Any, before: Any) -> None:
    with fresh() as store:
        added = cli_run(store, "add", "-l", label, "-", stdin=data)
        event(f"add -: {'ok' if added.exit_code == 0 else 'Error'}")
        if not ok_or_clear_error(added):
            unchanged(store, before)
        classified = cli_run(store, "classify", "--input", "-", "--format", "jsonl", stdin=data)
        event(f"classify --input -: {'ok' if classified.exit_code == 0 else 'Error'}")
        if ok_or_clear_error(classified):
            texts = [r["text"] for r in records(classified.stdout)]
            assert texts and all(t == t.strip() and t for t in texts)
            if added.exit_code == 0:
                stored = {r["text"] for r in records(exported(store))}
                assert set(texts) <= stored


test_stdin_succeeds_or_changes_nothing, test_stdin_long = both(
    STDIN, data=plain(), label=CLEAN_FIELD
)(_stdin)


# -- settings (no encoder: many examples) ------------------------------------------------


CHOICES = sorted({str(s.default) for s in SETTINGS.values()} | set(TRAIN_MODES) | set(ORDERS))
VALUES = st.one_of(  # arbitrary text, and values near what each setting accepts
    FIELD,
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [*CHOICES, *SELECTIONS, " 5 ", "1e309", "-0", "1_000", "0x10", "٣", "http://h/v1"]
    ),
)


def _config(key: str, value: str, fresh: Any, before: Any) -> None:
    with fresh() as store:
        result = cli_run(store, "config", "--format", "json", "--", key, value)
        event(f"config: {'ok' if result.exit_code == 0 else 'Error'}")
        if ok_or_clear_error(result):
            assert json.loads(result.stdout)[0]["value"] == parse(key, value)
            shown = json.loads(settings_shown(store)[1])
            was = json.loads(before[1][1])
            assert [s for s in shown if s["key"] != key] == [s for s in was if s["key"] != key]
            assert exported(store) == before[0]
        else:
            unchanged(store, before)


test_config_sets_a_checked_value_or_changes_nothing, test_config_long = both(
    CONFIGS, key=st.sampled_from(sorted(SETTINGS)), value=VALUES
)(_config)


# -- export then import is lossless --------------------------------------------------------


def _round_trip(rows: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows),
            encoding="utf-8",
        )
        imported = ok_or_clear_error(cli_run(root / "a", "import", str(source)))
        event(f"round trip: {'imported' if imported else 'refused (Error)'}")
        if not imported:
            return
        accepted = [(r["text"], r["label"]) for r in records(exported(root / "a"))]
        assert accepted == list(dict.fromkeys((t.strip(), lab.strip()) for t, lab in rows))
        for fmt in ("jsonl", "csv"):
            dump = root / f"export.{fmt}"
            dump.write_bytes(exported(root / "a", fmt).encode())
            again = cli_run(root / fmt, "import", str(dump))
            assert again.exit_code == 0, again.output
            back = [(r["text"], r["label"]) for r in records(exported(root / fmt))]
            assert back == accepted, fmt


test_export_then_import_is_lossless, test_round_trip_long = both(
    ROUND_TRIPS, rows=st.lists(st.tuples(CLEAN_FIELD, CLEAN_FIELD), min_size=1, max_size=4)
)(_round_trip)
