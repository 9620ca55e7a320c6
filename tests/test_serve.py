"""``fewshot serve`` over HTTP: a real uvicorn process on a loopback port, a urllib client.

One server on a copy of examples/tickets.csv answers the tests of the endpoints and their
errors; a second, started with a token on an empty workspace, answers those of the token
and of a workspace with nothing to classify with. What the CLI answers on the same
workspace is the oracle: the same records, the same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES
from serve_server import ROOT, Server

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

from fewshot.cli import cli
from fewshot.server.app import Refused, _runner
from fewshot.server.worker import Worker
from fewshot.workspace import Workspace

TOKEN = "a-test-token-of-32-characters-xx"
QUERIES = ["where is my parcel?", "I want my money back", "the app crashes at checkout"]


def cli_json(store: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("serve") / "ws"
    with Workspace.create(store) as ws:
        ws.import_file(EXAMPLES / "tickets.csv", train="never")
        ws.config("train", "never")
    with Server(store, "--max-batch", "8", "--max-body-bytes", "4000") as running:
        yield running


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("guarded") / "ws"
    Workspace.create(store).close()
    with Server(store, env={"FEWSHOT_SERVE_TOKEN": TOKEN}) as running:
        yield running


def test_classify_answers_the_records_of_the_cli(server: Server) -> None:
    expected = cli_json(server.store, "classify", "--format", "json", *QUERIES)
    status, one = server.call("POST", "/classify", {"text": QUERIES[0]})
    assert status == 200
    assert one == expected[0]
    status, many = server.call("POST", "/classify", {"texts": QUERIES})
    assert status == 200
    assert [r["label"] for r in many] == ["shipping", "refund", "technical"]
    assert many == expected


def test_explain_and_k_give_the_neighbours_of_the_cli(server: Server) -> None:
    expected = cli_json(
        server.store, "classify", "--format", "json", "--explain", "--k", "3", *QUERIES
    )
    status, records = server.call("POST", "/classify", {"texts": QUERIES, "explain": True, "k": 3})
    assert status == 200
    assert [len(r["neighbors"]) for r in records] == [3, 3, 3]
    assert [r["neighbors"] for r in records] == [r["neighbors"] for r in expected]


def test_status_is_the_cli_status(server: Server) -> None:
    status, body = server.call("GET", "/status")
    assert status == 200
    assert body == cli_json(server.store, "status", "--format", "json")
    assert body["labels"] == {"account": 6, "refund": 6, "shipping": 6, "technical": 6}


def test_examples_are_added_deduped_and_a_conflict_is_a_409(server: Server) -> None:
    text = "the parcel went to my neighbour's house"
    status, body = server.call("POST", "/examples", {"texts": [text], "label": "shipping"})
    assert (status, body["added"], body["training"]) == (200, 1, None)
    total = body["examples"]
    status, body = server.call(
        "POST", "/examples", {"examples": [{"text": text, "label": "shipping"}]}
    )
    assert (status, body["added"], body["unchanged"], body["examples"]) == (200, 0, 1, total)
    status, body = server.call(
        "POST", "/examples", {"texts": ["a new one", text], "label": "refund"}
    )
    assert status == 409
    assert body["error"] == (
        "text 2: this text is already labeled 'shipping' in the workspace, not 'refund'; "
        "pass --relabel to change its label. Nothing was added."
    )
    pair = [{"text": "twice", "label": "refund"}, {"text": "twice", "label": "account"}]
    status, body = server.call("POST", "/examples", {"examples": pair})
    assert status == 409
    assert "labeled 'account' here but 'refund' at text 1" in body["error"]
    assert server.call("GET", "/status")[1]["examples"] == total  # nothing of either was added
    exported = CliRunner().invoke(cli, ["--store", str(server.store), "export"]).stdout
    texts = {json.loads(line)["text"] for line in exported.splitlines()}
    assert text in texts and not {"a new one", "twice"} & texts
    status, body = server.call(
        "POST", "/examples", {"texts": [text], "label": "refund", "relabel": True}
    )
    assert (status, body["relabeled"]) == (200, 1)


def test_examples_added_by_another_process_answer_the_next_request(server: Server) -> None:
    text = "thank you so much, the support team was wonderful"
    result = CliRunner().invoke(cli, ["--store", str(server.store), "add", "-l", "praise", text])
    assert result.exit_code == 0, result.output
    status, record = server.call("POST", "/classify", {"text": text, "explain": True, "k": 1})
    assert status == 200
    assert record["label"] == "praise"
    assert record["neighbors"][0] == {"text": text, "label": "praise", "similarity": 1.0}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"texts": []}, 422, "body.texts: List should have at least 1 item"),
        ({"text": "x", "k": 0}, 422, "body.k: Input should be greater than or equal to 1"),
        ({"text": "x", "texts": ["y"]}, 422, "body.text: Extra inputs are not permitted"),
        ({"text": "x", "explain": 0}, 422, "body.explain: Input should be a valid boolean"),
        ({"text": "x", "k": "2"}, 422, "body.k: Input should be a valid integer"),
        ({"text": "x", "k": 2.5}, 422, "body.k: Input should be a valid integer"),
        ({"texts": ["ok", " \t"]}, 422, "body.texts.1: the text is empty or only whitespace"),
        ([1, 2], 422, "body: expected a JSON object"),
        ({"texts": ["x"] * 9}, 413, "got 9 texts in one request; the server takes at most 8"),
        ({"text": "x" * 5000}, 413, "the request body has 5012 bytes; the server takes at most"),
        (
            {"text": "\ud800 lone"},
            422,
            "body.text: Input should be a valid string, unable to parse",
        ),
    ],
)
def test_bad_requests_get_the_status_and_the_message(
    server: Server, body: Any, status: int, message: str
) -> None:
    got, answer = server.call("POST", "/classify", body)
    assert got == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_unknown_endpoints_and_methods_answer_json(server: Server) -> None:
    assert server.call("GET", "/nothing") == (
        404,
        {"error": "no endpoint /nothing; the endpoints are listed at /docs."},
    )
    status, body = server.call("GET", "/classify")
    assert (status, body) == (405, {"error": "GET is not allowed on /classify; see /docs."})


def test_the_schema_and_its_docs_page_are_served(server: Server) -> None:
    status, schema = server.call("GET", "/openapi.json")
    assert status == 200
    assert {"/classify", "/examples", "/status", "/healthz"} <= set(schema["paths"])
    assert "413" in schema["paths"]["/classify"]["post"]["responses"]
    assert schema["components"]["schemas"]["ManyTexts"]["properties"]["texts"]["maxItems"] == 8
    status, page = server.call("GET", "/docs")
    assert status == 200 and "swagger" in page.lower()


def test_a_body_that_is_not_json_is_a_422_in_json(server: Server) -> None:
    status, body = server.call("POST", "/classify", data=b"{not json")
    assert status == 422
    assert body["error"].startswith("the request body does not match the schema (see /docs): ")
    assert "Traceback" not in body["error"]


# -- the token, and a workspace with nothing to classify with -------------------------------


def test_a_token_server_refuses_requests_without_it(guarded: Server) -> None:
    assert guarded.call("GET", "/healthz") == (200, {"status": "ok"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, body = guarded.call("POST", "/classify", {"text": "hello"}, headers)
        assert status == 401, headers
        assert "Authorization: Bearer <token>" in body["error"]
        assert TOKEN not in json.dumps(body)
    assert TOKEN not in guarded.output()


def test_classify_on_an_empty_workspace_is_a_404_with_the_cli_message(guarded: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    result = CliRunner().invoke(cli, ["--store", str(guarded.store), "classify", "hello"])
    assert result.exit_code == 1
    status, body = guarded.call("POST", "/classify", {"text": "hello"}, auth)
    assert status == 404
    assert f"Error: {body['error']}" == result.output.strip()
    status, body = guarded.call(
        "POST", "/examples", {"texts": ["hello there"], "label": "hi"}, auth
    )
    assert (status, body["added"]) == (200, 1)
    status, record = guarded.call("POST", "/classify", {"text": "hello"}, auth)
    assert (status, record["label"]) == (200, "hi")


def test_a_public_address_needs_a_token(tmp_path: Path) -> None:
    Workspace.create(tmp_path / "ws").close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(tmp_path / "ws"), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "Error: --host 0.0.0.0 is not a loopback address" in result.output
    assert "FEWSHOT_SERVE_TOKEN" in result.output
    env = {"FEWSHOT_SERVE_TOKEN": "short"}
    result = runner.invoke(cli, ["--store", str(tmp_path / "ws"), "serve"], env=env)
    assert result.exit_code == 1
    assert "FEWSHOT_SERVE_TOKEN is 5 characters long; use a secret of at least 16" in result.output
    assert "short" not in result.output.replace("characters long", "")


def test_serve_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.argv = ['fewshot', 'serve']; "
        "from fewshot.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "Error: fewshot serve needs the serve extra: pip install 'fewshot[serve]'"
    )


def test_serve_on_a_missing_workspace_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "none"), "serve"])
    assert result.exit_code == 1
    assert "no workspace here; create one with `fewshot init`" in result.output


def test_a_request_past_the_timeout_is_a_504_and_is_dropped_from_the_queue() -> None:
    never: Future[int] = Future()
    run = _runner(0.05)
    with pytest.raises(Refused) as caught:
        asyncio.run(run(lambda: never))
    assert caught.value.status == 504
    assert "took longer than the server's timeout (0.05 s)" in str(caught.value)
    assert never.cancelled()


def test_the_readme_requests_work(server: Server) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme.split("## Serving over HTTP\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in part.splitlines() if line.startswith("curl ")]
    assert len(lines) == 6
    for line in lines:
        args = shlex.split(line)
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        url = next(a for a in args if a.startswith("http://127.0.0.1:8000/"))
        body = json.loads(args[args.index("-d") + 1]) if "-d" in args else None
        status, answer = server.call(method, url.removeprefix("http://127.0.0.1:8000"), body)
        assert status == 200, (line, answer)


def test_requests_queued_together_each_get_their_own_answers(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    with Workspace.create(store) as ws:
        ws.import_file(EXAMPLES / "tickets.csv", train="never")
        expected = [p.to_dict() for p in ws.classify(QUERIES)]
    worker = Worker(store, max_batch=4)
    worker.start()
    gate = threading.Event()
    held = worker.call(lambda ws: gate.wait(60))  # the worker waits here: the rest queue up
    single = [worker.classify([q], None, False) for q in QUERIES]
    pair = worker.classify(QUERIES[1:], None, False)
    explained = worker.classify(QUERIES[:1], 2, True)  # other options: a batch of its own
    gate.set()
    try:
        assert held.result(60) is True
        assert [f.result(60) for f in single] == [[e] for e in expected]
        # a batch of other texts pads them otherwise: the same answers, floats to ~1e-6
        answered = pair.result(60)
        assert [r["label"] for r in answered] == [e["label"] for e in expected[1:]]
        confidences = [r["confidence"] for r in answered]
        assert confidences == pytest.approx([e["confidence"] for e in expected[1:]], abs=1e-5)
        record = explained.result(60)[0]
        assert record["label"] == expected[0]["label"] and len(record["neighbors"]) == 2
    finally:
        worker.stop()


def test_a_bug_is_a_500_whose_body_has_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fewshot.server.app import create_app

    def planted_bug(self: Workspace) -> None:
        raise RuntimeError("planted bug: secret internals")

    Workspace.create(tmp_path / "ws").close()
    monkeypatch.setattr(Workspace, "status", planted_bug)
    worker = Worker(tmp_path / "ws")
    worker.start()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/status", "raw_path": b"/status",
             "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1),
             "root_path": ""}  # fmt: skip
    try:
        with contextlib.suppress(RuntimeError):  # Starlette re-raises it after answering
            asyncio.run(create_app(worker)(scope, receive, send))
    finally:
        worker.stop()
    assert sent[0]["status"] == 500
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body == {"error": "internal error (a bug in fewshot); the server's log has the details."}
