"""Inputs at the edges (issue 14, rows 6, 8 and 10): extra CSV fields, bytes on stdin, closed
pipes, an API key echoed by a server, control characters in tables, and a 1 MB text.

Real processes where the behaviour is the process's (a closed pipe, a traceback, peak
memory); the CLI in-process (CliRunner) elsewhere; a real HTTP server for the LLM.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from chat_server import ChatServer, Recorded, Reply
from click.testing import CliRunner, Result
from conftest import ROOT
from rich.console import Console

from fewshot.cli import cli
from fewshot.cli.label_screen import TerminalScreen, label_file
from fewshot.cli.render import predictions_table
from fewshot.dataio import read_labeled, read_texts
from fewshot.embed import Encoder, encode_with
from fewshot.errors import DataError
from fewshot.workspace import Workspace

SECRET = "sk-test-5ecret-echoed-back-0123456789"
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
ENV.pop("FEWSHOT_DEBUG", None)


def run(
    store: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    return CliRunner(env=env).invoke(cli, ["--store", str(store), *args], input=stdin)


def failed(result: Result, *parts: str) -> None:
    """The command failed with a clear `Error:` naming every part, and no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert result.stderr.startswith("Error: "), result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)


def exported(store: Path) -> list[dict[str, str]]:
    result = run(store, "export")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(autouse=True)
def _no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FEWSHOT_LLM_URL", "FEWSHOT_LLM_MODEL", "FEWSHOT_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FEWSHOT_DEBUG", raising=False)


@pytest.fixture
def small(store_dir: Path) -> Iterator[Path]:
    """A workspace with two labels, three examples each (training off)."""
    with Workspace.create(store_dir) as ws:
        ws.config("train", "never")
        ws.add(["I want my money back", "refund my order", "please refund me"], "refund")
        ws.add(["where is my parcel", "my package is late", "tracking number"], "shipping")
    yield store_dir


# -- row 6: a row with more fields than the header ----------------------------------------


def test_a_csv_row_with_more_fields_than_the_header_is_an_error(
    small: Path, tmp_path: Path
) -> None:
    before = exported(small)
    path = tmp_path / "more.csv"
    path.write_text("text,label\nfine,refund\nHello, I want my money back,refund\n")
    failed(run(small, "import", str(path)), f"{path}, line 3", "3 fields but the header has 2")
    assert exported(small) == before  # nothing of the file was written
    with pytest.raises(DataError, match=r"more\.csv, line 3: 3 fields"):
        read_texts(path)  # classify --input and label read the same way


def test_a_tsv_row_with_more_fields_than_the_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "more.tsv"
    path.write_text("text\tlabel\nfine\trefund\nHello\tI want my money back\trefund\n")
    with pytest.raises(DataError, match=r"more\.tsv, line 3: 3 fields but the header has 2.*tab"):
        read_labeled(path)


def test_a_quoted_comma_is_one_field(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text('text,label\n"Hello, I want my money back",refund\n')
    assert read_labeled(path) == [("Hello, I want my money back", "refund", 2)]


# -- row 8: stdin is read like a file -----------------------------------------------------


def test_invalid_utf8_on_stdin_is_an_error_naming_the_line(small: Path, tmp_path: Path) -> None:
    before = exported(small)
    data = b"fine\nmy caf\xe9 order\n"
    failed(run(small, "add", "-l", "refund", "-", stdin=data), "stdin, line 2: invalid UTF-8")
    failed(run(small, "classify", "--input", "-", stdin=data), "stdin, line 2: invalid UTF-8")
    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    failed(run(small, "classify", "--input", str(path)), f"{path}, line 2: invalid UTF-8")
    assert exported(small) == before


def test_invalid_utf8_on_stdin_gives_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    done = subprocess.run(
        [sys.executable, "-m", "fewshot", "--store", str(store), "add", "-l", "x", "-"],
        input=b"caf\xe9\n", capture_output=True, env=ENV, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.decode().startswith("Error: stdin, line 1: invalid UTF-8 (byte 0xe9)")
    assert b"Traceback" not in done.stderr
    assert not store.exists()  # checked before anything is created


def test_a_bom_on_stdin_is_stripped_as_for_a_file(small: Path, tmp_path: Path) -> None:
    result = run(small, "add", "-l", "shipping", "-", stdin=b"\xef\xbb\xbfwhere is my parcel\n")
    assert result.exit_code == 0, result.output
    assert "0 example(s)" in result.stdout and "1 already labeled" in result.stdout
    texts = [row["text"] for row in exported(small)]
    assert texts.count("where is my parcel") == 1 and not any("\ufeff" in t for t in texts)
    result = run(small, "classify", "--input", "-", stdin=b"\xef\xbb\xbfwhere is my parcel\n")
    assert json.loads(result.stdout)["text"] == "where is my parcel"

    from fewshot.dataio import read_stdin  # new: imported here so the rest runs on old code

    data = "\ufeffwhere is my parcel\nnew one\r\nlast\rline\n".encode()
    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    assert read_stdin(io.BytesIO(data)) == read_texts(path)
    assert read_stdin(io.BytesIO(data)) == ["where is my parcel", "new one", "last", "line"]


# -- found by the fuzz tests (tests/test_fuzz.py) ------------------------------------------


def test_a_lone_surrogate_is_an_error_not_a_traceback(small: Path, tmp_path: Path) -> None:
    before = exported(small)
    path = tmp_path / "escaped.jsonl"
    path.write_text('{"text": "fine", "label": "refund"}\n{"text": "a\\ud800b", "label": "x"}\n')
    failed(run(small, "import", str(path)), f"{path}, line 2: the text is not valid Unicode")
    # A byte that is not UTF-8 in an argument reaches Python as a lone surrogate.
    failed(run(small, "add", "-l", "refund", "caf\udce9"), "text 1: the text is not valid Unicode")
    failed(run(small, "add", "-l", "x\udcff", "fine"), "the label is not valid Unicode")
    assert exported(small) == before


def test_a_carriage_return_survives_a_csv_round_trip(store_dir: Path, tmp_path: Path) -> None:
    rows = [("one\rtwo", "a\rb"), ("plain", "c"), ('say "hi",\r\nthen', "d\ne")]
    with Workspace.create(store_dir) as ws:
        ws.config("train", "never")
        for text, label in rows:
            ws.add([text], label)
    dump = tmp_path / "export.csv"
    dump.write_bytes(run(store_dir, "export", "--format", "csv").stdout_bytes)  # CRLF kept
    assert [(t, lab) for t, lab, _ in read_labeled(dump)] == rows
    result = run(tmp_path / "again", "import", str(dump))
    assert result.exit_code == 0, result.output
    assert [(r["text"], r["label"]) for r in exported(tmp_path / "again")] == rows


# -- row 10: a closed pipe ends quietly ---------------------------------------------------


def _head(*args: str) -> tuple[int, bytes, bytes]:
    """Run `fewshot ARGS | head -1`; return fewshot's exit status and stderr, head's output."""
    command = [sys.executable, "-m", "fewshot", *args]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert writer.stdout is not None and writer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, check=False)
    writer.stdout.close()  # only head reads the pipe; when it exits, the pipe is closed
    error = writer.stderr.read()
    return writer.wait(timeout=300), error, head.stdout


def test_a_closed_pipe_ends_quietly_with_exit_0(tmp_path: Path) -> None:
    # Three texts of 100 KB: far more than a pipe holds, so fewshot writes after head is gone.
    words = ("refund", "parcel", "account", "password", "order", "late", "broken", "money")
    texts = [" ".join(words[(i + j) % len(words)] for j in range(12_000)) for i in range(3)]
    store = tmp_path / "ws"
    with Workspace.create(store) as ws:
        ws.config("train", "never")
        ws.add(texts, "long")
    inbox = tmp_path / "inbox.txt"
    inbox.write_text("\n".join(texts) + "\n")
    for args in (["export"], ["classify", "--input", str(inbox), "--format", "jsonl"]):
        code, error, first = _head("--store", str(store), *args)
        assert code == 0, (args, error)
        assert error == b"", (args, error)  # no "Broken pipe", no "Exception ignored"
        assert json.loads(first)["text"] == texts[0]


# -- row 10: an API key echoed back by the server is never shown -------------------------


def test_an_api_key_echoed_in_an_unknown_answer_is_redacted(small: Path) -> None:
    def echo(request: Recorded) -> Reply:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return Reply("x" * 190 + key)  # across the cut of the kept reply

    env = {"FEWSHOT_LLM_API_KEY": SECRET}
    with ChatServer() as server:
        server.respond(echo)
        query = ["classify", "when will it come", "--llm-url", server.url, "--format"]
        outputs = [run(small, *query, fmt, env=env) for fmt in ("json", "jsonl", "csv", "table")]
        assert [r.headers["Authorization"] for r in server.chats] == [f"Bearer {SECRET}"] * 4
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert SECRET[:8] not in result.output  # not the key, nor any start of it
    record = json.loads(outputs[0].stdout)[0]
    assert record["fallback"] == "unknown answer"
    assert record["reply"] == "x" * 190 + "***"


# -- row 10: control characters are escaped in tables, exact in JSON ----------------------


def test_control_characters_are_escaped_in_tables_and_exact_in_json(store_dir: Path) -> None:
    labels = ["two\nlines", "nul\x00here", "esc\x1b[2Jclear"]
    with Workspace.create(store_dir) as ws:
        ws.config("train", "never")
        for label in labels:
            ws.add([f"a text for {label}", f"another text for {label}"], label)
    wide = {"COLUMNS": "200"}  # no cell folds
    status = run(store_dir, "status", env=wide)
    query = ["classify", "a text for two", "--format", "table", "--explain"]
    table = run(store_dir, *query, env=wide)
    for result in (status, table):
        assert result.exit_code == 0, result.output
        assert "\x00" not in result.stdout and "\x1b" not in result.stdout
        assert "two\\nlines" in result.stdout and "nul\\x00here" in result.stdout
    assert "esc\\x1b[2Jclear" in status.stdout
    assert json.loads(run(store_dir, "status", "--format", "json").stdout)["labels"] == {
        label: 2 for label in labels
    }
    answer = json.loads(run(store_dir, "classify", "a text for two", "--format", "json").stdout)
    assert answer[0]["label"] == "two\nlines"  # JSON stays exact
    assert [row["label"] for row in exported(store_dir)][::2] == labels


def test_control_characters_are_escaped_in_the_label_screen(store_dir: Path) -> None:
    with Workspace.create(store_dir) as ws:
        ws.config("train", "never")
        ws.add(["hello there", "hello again"], "greet\x1b[31m\u202e")
        buffer = io.StringIO()
        screen = TerminalScreen(io.StringIO("q\n"), Console(file=buffer, width=200))
        label_file(ws, ["hello\x00 world\nsecond line"], "in.txt", screen, order="file")
    shown = buffer.getvalue()
    assert "\x1b" not in shown and "\x00" not in shown and "\u202e" not in shown
    assert "greet\\x1b[31m\\u202e" in shown and "hello\\x00 world" in shown


def test_visible_escapes_controls_and_keeps_other_text() -> None:
    from fewshot.cli.render import visible

    assert visible("a\nb\tc\rd\x00e\x7f\x85\u2028\u2066") == (
        "a\\nb\\tc\\rd\\x00e\\x7f\\x85\\u2028\\u2066"
    )
    assert visible("a\nb\tc\x00", lines=True) == "a\nb\tc\\x00"
    kept = "café 東京 👩‍💻 [bold] \\n"
    assert visible(kept) == kept
    table = predictions_table(
        [{"text": "t\x1b", "label": "l\x00", "confidence": 1.0, "stage": "retrieval"}]
    )
    buffer = io.StringIO()
    Console(file=buffer, width=80).print(table)
    assert "t\\x1b" in buffer.getvalue() and "l\\x00" in buffer.getvalue()


# -- row 10: a long text is cut to the encoder's window, with the same vector --------------


@pytest.fixture(scope="module")
def backend() -> object:
    return Encoder("default").backend


def test_the_window_cut_keeps_every_vector(backend: object, tmp_path: Path) -> None:
    from conftest import EXAMPLES

    from fewshot.embed import window

    normal = [text for text, _, _ in read_labeled(EXAMPLES / "tickets.csv")]
    sentence = "my order arrived broken, I want a refund or a new one please "
    long_text = sentence * 250  # ~15 000 characters
    sparse = " " * 5000 + "where is my parcel"  # the first cut would hold no token
    limit = backend.max_seq_length  # type: ignore[attr-defined]
    assert all(window(backend, t) is t for t in [*normal, sparse[:2000]])
    assert len(window(backend, long_text)) < limit * 8 < len(long_text)
    assert window(backend, sparse).endswith("where is my parcel")
    texts = [*normal, long_text, sparse]
    uncut = backend.encode(texts, normalize_embeddings=True, convert_to_numpy=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(encode_with(backend, texts, 16), uncut, atol=1e-5)


def test_a_1mb_text_is_encoded_in_little_memory(tmp_path: Path) -> None:
    script = (
        "import resource, sys\n"
        "from fewshot.embed import Encoder\n"
        "encoder = Encoder('default')\n"
        "encoder.encode(['warm up'])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "text = ' '.join(['my parcel never arrived, refund me'] * 30000)[:1_000_000]\n"
        "encoder.encode([text])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=ENV, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 60, f"peak memory grew by {int(done.stdout)} MB"  # was ~180
