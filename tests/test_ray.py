"""Bulk classification on a real local Ray cluster: the labels of a local classify, every row once.

One Ray instance serves the module (3 logical CPUs: two actors and a reader). The workspace
is examples/tickets.csv with a two-step SetFit version answering (``stage setfit``: even
where the gate would keep retrieval), so the snapshot carries a fine-tuned model as well as
the database.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="no ray extra: pip install 'fewshot[ray]'")

import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import fewshot.ray as fray  # noqa: E402
from fewshot.cli import cli  # noqa: E402
from fewshot.errors import DataError  # noqa: E402
from fewshot.workspace import Workspace  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STARTS = [
    "Where is my parcel",
    "I want my money back for",
    "I cannot log in to",
    "The app crashes when I open",
    "Please help with",
    "Nothing works with",
    "Quick question about",
    "Still waiting on",
]
ENDS = [
    "the order I placed last week",
    "my account settings",
    "the invoice you sent",
    "the mobile app",
    "the delivery to my office",
    "the password reset email",
    "a duplicate charge",
    "the tracking number",
    "my subscription",
    "the desktop client",
]


def corpus(n: int) -> list[str]:
    """``n`` distinct support-ticket texts (the same ones on every run)."""
    texts = [f"{s} {e}" for s in STARTS for e in ENDS]
    return [f"{texts[i % len(texts)]} (ticket {i})" for i in range(n)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "ws"
    with Workspace.create(path, min_per_label=6) as ws:
        for key, value in (("max_steps", "2"), ("gate_folds", "2"), ("train", "never")):
            ws.config(key, value)
        ws.import_file(EXAMPLES / "tickets.csv")
        ws.train(force=True)
        ws.config("stage", "setfit")
    return path


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def local_labels(store: Path, texts: list[str]) -> list[tuple[str | None, str]]:
    with Workspace.open(store) as ws:
        return [(p.label, p.stage) for p in ws.classify(texts)]


def test_ray_gives_the_labels_of_a_local_classify_with_two_workers(
    cluster: None, store: Path
) -> None:
    texts = corpus(2000)
    expected = local_labels(store, texts)
    assert {stage for _, stage in expected} == {"setfit"}  # the model answers
    assert len({label for label, _ in expected}) >= 3  # the model tells the labels apart
    before = digest(store)
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    rows = fray.classify_dataset(ds, store, num_workers=2, batch_size=100).take_all()
    assert [r["row"] for r in rows] == list(range(len(texts)))
    assert [(r["label"], r["stage"]) for r in rows] == expected
    assert digest(store) == before  # the workers never wrote the workspace


def test_a_killed_worker_is_retried_and_every_row_comes_out_once(
    cluster: None, store: Path
) -> None:
    texts = corpus(800)  # 16 batches: the first answered row leaves most of them to run
    expected = [label for label, _ in local_labels(store, texts)]
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    labeled = fray.classify_dataset(ds, store, num_workers=1, batch_size=50)
    result: dict[str, Any] = {"rows": []}
    answering = threading.Event()

    def consume() -> None:
        try:
            for row in labeled.iter_rows():
                result["rows"].append(row)
                answering.set()
        except BaseException as err:
            result["error"] = err
        finally:
            answering.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    # Kill the actor once it has answered (not while it loads the snapshot), however slow
    # a loaded machine makes that.
    answering.wait(timeout=600)
    killed = kill_an_actor(deadline=time.monotonic() + 60)
    running_after_kill = worker.is_alive()
    worker.join(timeout=600)
    assert killed, "no Classifier actor was found to kill"
    assert running_after_kill, "the run had ended before the kill: nothing was retried"
    assert not worker.is_alive(), "the run did not finish within 600 s of the kill"
    assert "error" not in result, result.get("error")
    rows = result["rows"]
    assert sorted(r["row"] for r in rows) == list(range(len(texts)))  # each row exactly once
    assert [r["label"] for r in sorted(rows, key=lambda r: r["row"])] == expected


def kill_an_actor(deadline: float) -> bool:
    """SIGKILL the first MapWorker process found."""
    while time.monotonic() < deadline:
        pids = actor_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return True
        time.sleep(0.2)
    return False


def actor_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker(MapBatches(Classifier))" in command:
                found.append(int(entry.name))
    return found


def test_the_cli_writes_the_local_labels_from_ray(
    cluster: None, store: Path, tmp_path: Path
) -> None:
    texts = corpus(600)
    source = tmp_path / "tickets.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), source)
    out_local, out_ray = tmp_path / "local.parquet", tmp_path / "ray.csv"
    runner = CliRunner()
    common = ["--store", str(store), "classify", "--input", str(source), "--output"]
    local = runner.invoke(cli, [*common, str(out_local)])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(cli, [*common, str(out_ray), "--engine", "ray", "--num-workers", "2"])
    assert remote.exit_code == 0, remote.output
    assert f"Wrote {len(texts)} row(s)" in remote.output
    want = pq.read_table(out_local).to_pydict()
    got = pacsv.read_csv(out_ray).to_pydict()
    assert got["id"] == list(range(len(texts)))
    assert got["label"] == want["label"]
    assert got["scores"] == want["scores"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("codes.csv", 'code,text\n007,"  Where is my parcel"\n010,"line one\nline two"\n'),
        pytest.param(
            "notes.ndjson",
            '{"text": "my money back", "n": [1, 2]}\n{"text": "log in", "n": []}\n',
            marks=pytest.mark.slow,  # the Ray reader of the formats above; `make test-slow`
        ),
        ("plain.txt", "\ufeffWhere is my parcel\n   \nI cannot log in\n"),
    ],
)
def test_ray_writes_the_rows_a_local_run_writes(
    cluster: None, store: Path, tmp_path: Path, name: str, content: str
) -> None:
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    common = ["--store", str(store), "classify", "--input", str(source), "--output"]
    written = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        result = CliRunner().invoke(cli, [*common, str(out), "--engine", engine])
        assert result.exit_code == 0, result.output
        written.append(out.read_text(encoding="utf-8"))
    assert written[1] == written[0]
    assert '"code": "007"' in written[0] or "code" not in content


def test_a_bad_row_on_a_worker_is_an_error_message(
    cluster: None, store: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "where is my parcel"}\n{"text": "   "}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    args = ["--store", str(store), "classify", "--input", str(source), "--output", str(out)]
    result = CliRunner().invoke(cli, [*args, "--engine", "ray"])
    assert result.exit_code == 1, result.output
    assert "Error: column 'text': the text is empty" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_the_dataset_must_have_the_text_column(cluster: None, store: Path) -> None:
    ds = ray.data.from_items([{"body": "where is my parcel"}])
    with pytest.raises(DataError, match="no column 'text'"):
        fray.classify_dataset(ds, store)
