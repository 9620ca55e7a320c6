"""The LLM stage end to end, against a real HTTP server on 127.0.0.1 (tests/chat_server.py).

Every test asserts on what was sent (demonstrations, label set, query) and on what came
back; every fallback path returns the retrieval answer, says why, and exits 0.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import ChatServer, Recorded, Reply
from click.testing import CliRunner, Result
from conftest import EXAMPLES

from fewshot.backends import LLMConfig, LLMSettings, available, load, resolve
from fewshot.backends.base import api_key
from fewshot.backends.openai import base_url
from fewshot.cli import cli
from fewshot.errors import ConfigError
from fewshot.stages.llm import parse_answer
from fewshot.values import Prediction
from fewshot.workspace import Workspace

LABELS = ["account", "refund", "shipping", "technical"]
QUERY = "when will my order arrive?"  # retrieval answers shipping
SECRET = "sk-test-5ecret-do-not-leak-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FEWSHOT_LLM_URL", "FEWSHOT_LLM_MODEL", "FEWSHOT_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FEWSHOT_DEBUG", raising=False)


@pytest.fixture(scope="module")
def _tickets_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/tickets.csv imported once per module; each test gets a copy (no re-encoding)."""
    path = tmp_path_factory.mktemp("tickets") / "ws"
    with Workspace.create(path) as ws:
        ws.import_file(EXAMPLES / "tickets.csv")
        ws.memory()  # build the index cache too
    return path


@pytest.fixture
def tickets_workspace(_tickets_template: Path, tmp_path: Path) -> Iterator[Workspace]:
    """A fresh copy of the tickets workspace (overrides conftest's, which re-encodes)."""
    path = tmp_path / "ws"
    shutil.copytree(_tickets_template, path)
    with Workspace.open(path) as ws:
        yield ws


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as chat:
        yield chat


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def run(store: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, ["--store", str(store), *args])


def records(result: Result) -> list[dict[str, object]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def retrieval(ws: Workspace, text: str = QUERY, k: int = 4) -> Prediction:
    return ws.classify([text], k=k, explain=True, llm=False)[0]


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("refund", "refund"),
        ("  Refund.\n", "refund"),
        ('"SHIPPING"', "shipping"),
        ("Label: technical", "technical"),
        ("The answer is account, clearly.", "account"),
        ("<think>refund or shipping?</think>shipping", "shipping"),
        ("very  positive", "very positive"),  # contains 'positive' too: the longer one wins
        ("refund or shipping", None),  # two labels: ambiguous
        ("I don't know", None),
        ("refunds", None),  # not a whole word
        ("", None),
    ],
)
def test_replies_map_to_one_label_or_none(reply: str, expected: str | None) -> None:
    labels = [*LABELS, "positive", "very positive"]
    assert parse_answer(reply, labels) == expected


# -- what is sent and what comes back -------------------------------------------------------


def test_classify_sends_the_retrieved_demonstrations_and_uses_the_answer(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    server.respond(lambda request: Reply("account"))  # not retrieval's answer: proves the LLM
    expected = retrieval(tickets_workspace)
    assert expected.label == "shipping"
    llm = LLMSettings(url=server.url, model="m1")
    answer = tickets_workspace.classify([QUERY], k=4, explain=True, llm=llm)[0]
    assert (answer.label, answer.stage, answer.fallback) == ("account", "llm", None)
    [request] = server.chats
    assert request.body is not None
    assert (request.body["model"], request.body["temperature"]) == ("m1", 0)
    assert request.body["logprobs"] is True
    assert request.query == QUERY
    assert request.labels == LABELS
    assert "exactly one label" in request.messages[0]["content"]
    retrieved = [(n.text, n.label) for n in expected.neighbors or ()]
    assert request.demonstrations == retrieved[::-1]  # sent with the most similar last
    assert [(n.text, n.label) for n in answer.neighbors or ()] == retrieved  # listed first
    assert "Authorization" not in request.headers


def test_logprobs_give_the_confidence(tickets_workspace: Workspace, server: ChatServer) -> None:
    server.script(Reply("refund", logprobs=(-0.1, -0.2)), Reply("refund"))
    llm = LLMSettings(url=server.url, model="m")
    with_lp = tickets_workspace.classify([QUERY], llm=llm)[0]
    assert with_lp.confidence == pytest.approx(math.exp(-0.3))
    assert with_lp.scores["refund"] == pytest.approx(math.exp(-0.3))
    assert sum(with_lp.scores.values()) == pytest.approx(1.0)
    without = tickets_workspace.classify([QUERY], llm=llm)[0]
    assert without.label == "refund"
    assert without.confidence == pytest.approx(retrieval(tickets_workspace, k=10).scores["refund"])


def test_a_server_rejecting_logprobs_is_asked_again_without(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    server.script(Reply(status=400), Reply("refund"))
    answer = tickets_workspace.classify([QUERY], llm=LLMSettings(url=server.url, model="m"))[0]
    assert (answer.label, answer.stage) == ("refund", "llm")
    first, second = server.chats
    assert first.body is not None and first.body["logprobs"] is True
    assert second.body is not None and "logprobs" not in second.body


def test_429_then_ok_is_retried(tickets_workspace: Workspace, server: ChatServer) -> None:
    server.script(Reply(status=429, retry_after="0"), Reply(status=503, retry_after="0"))
    server.respond(lambda request: Reply("technical"))
    answer = tickets_workspace.classify([QUERY], llm=LLMSettings(url=server.url, model="m"))[0]
    assert (answer.label, answer.stage, answer.fallback) == ("technical", "llm", None)
    assert len(server.chats) == 3


def test_the_model_defaults_to_the_first_the_server_lists(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    server.respond(lambda request: Reply("refund"))
    answer = tickets_workspace.classify([QUERY], llm=LLMSettings(url=server.url))[0]
    assert answer.stage == "llm"
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]
    assert server.chats[0].body is not None and server.chats[0].body["model"] == "test-model"


def test_batches_run_concurrently_and_keep_their_order(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    texts = ["my app crashes", "refund me please", "reset my password", "where is my parcel"]
    answers = dict(zip(texts, ["account", "technical", "shipping", "refund"]))  # all "wrong"
    meet = threading.Barrier(2, timeout=5)  # a reply waits for a second request in flight

    def responder(request: Recorded) -> Reply:
        meet.wait()
        return Reply(answers[request.query])

    server.respond(responder)
    tickets_workspace.config("llm_concurrency", "2")
    llm = LLMSettings(url=server.url, model="m")
    predictions = tickets_workspace.classify(texts, llm=llm, progress=True)  # with the bar
    assert [(p.label, p.stage) for p in predictions] == [(answers[t], "llm") for t in texts]
    assert server.max_in_flight == 2


# -- fallbacks: the retrieval answer, the reason, exit code 0 -----------------------------------


@pytest.mark.parametrize(
    ("replies", "reason", "requests"),
    [
        ([Reply("I cannot tell")], "unknown answer", 1),
        ([Reply(status=500, retry_after="0")] * 3, "http 500", 3),  # bounded: 1 + 2 retries
        ([Reply(hold=True)], "timeout", 1),
        ([Reply(raw=b"<html>not json</html>")], "invalid response", 1),
        ([Reply(status=404)], "http 404", 1),
    ],
)
def test_failures_fall_back_to_retrieval_and_say_why(
    tickets_workspace: Workspace,
    server: ChatServer,
    replies: list[Reply],
    reason: str,
    requests: int,
) -> None:
    expected = retrieval(tickets_workspace, k=10)
    server.script(*replies)
    store = tickets_workspace.path
    assert run(store, "config", "llm_timeout", "0.3").exit_code == 0
    result = run(store, "classify", QUERY, "--llm-url", server.url, "--llm-model", "m")
    [record] = records(result)
    assert record["label"] == expected.label == "shipping"
    assert (record["stage"], record["fallback"]) == ("retrieval", reason)
    assert record["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
    assert len(server.chats) == requests
    assert record.get("reply") == ("I cannot tell" if reason == "unknown answer" else None)


def test_connection_refused_falls_back(tickets_workspace: Workspace, dead_url: str) -> None:
    result = run(tickets_workspace.path, "classify", QUERY, "--explain", "--llm-url", dead_url)
    [record] = records(result)
    assert (record["label"], record["stage"]) == ("shipping", "retrieval")
    assert record["fallback"] == "connection refused"
    assert record["neighbors"]  # the retrieval answer keeps its own evidence


# -- settings: where the URL, model and key come from --------------------------------------------


def test_option_beats_environment_beats_workspace(
    tickets_workspace: Workspace, server: ChatServer, dead_url: str
) -> None:
    server.respond(lambda request: Reply("refund"))
    store = tickets_workspace.path
    assert run(store, "config", "llm_url", dead_url).exit_code == 0
    assert run(store, "config", "llm_model", "ws-model").exit_code == 0
    [ws_only] = records(run(store, "classify", QUERY))
    assert ws_only["fallback"] == "connection refused"  # the workspace's URL was used

    env = {"FEWSHOT_LLM_URL": server.url, "FEWSHOT_LLM_MODEL": "env-model"}
    [from_env] = records(run(store, "classify", QUERY, env=env))
    assert from_env["stage"] == "llm"
    env_dead = {"FEWSHOT_LLM_URL": dead_url, "FEWSHOT_LLM_MODEL": "env-model"}
    option = ["--llm-url", server.url, "--llm-model", "opt-model"]
    [from_option] = records(run(store, "classify", QUERY, *option, env=env_dead))
    assert from_option["stage"] == "llm"
    assert [r.body["model"] for r in server.chats if r.body] == ["env-model", "opt-model"]


def test_url_may_be_the_base_the_endpoint_or_a_bare_host(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    assert base_url("http://localhost:11434/v1") == "http://localhost:11434/v1"
    assert base_url("http://localhost:8000/v1/chat/completions/") == "http://localhost:8000/v1"
    assert base_url("http://localhost:8080") == "http://localhost:8080/v1"
    for bad in ("localhost:11434", "ftp://host/v1", ""):
        with pytest.raises(ConfigError, match="expected an http"):
            base_url(bad)
    server.respond(lambda request: Reply("refund"))
    endpoint = server.url + "/chat/completions"
    [record] = records(run(tickets_workspace.path, "classify", QUERY, "--llm-url", endpoint))
    assert record["stage"] == "llm"
    assert server.chats[0].path == "/v1/chat/completions"


def test_bad_llm_settings_are_errors_without_traceback(tickets_workspace: Workspace) -> None:
    store = tickets_workspace.path
    bad_url = run(store, "classify", QUERY, "--llm-url", "ftp://example.org/v1")
    assert bad_url.exit_code == 1
    assert bad_url.stderr.startswith("Error: LLM URL: expected an http(s) URL")
    no_url = run(store, "classify", QUERY, "--llm-model", "m")
    assert no_url.exit_code == 1
    assert "no URL is set" in no_url.stderr
    bad_timeout = run(store, "config", "llm_timeout", "soon")
    assert bad_timeout.exit_code == 1
    assert "setting 'llm_timeout': expected a finite number >= 0.001" in bad_timeout.stderr
    bad_order = run(store, "config", "prompt_order", "best")
    assert bad_order.exit_code == 1
    assert "expected one of similar-last" in bad_order.stderr
    assert "Traceback" not in bad_url.output + no_url.output + bad_timeout.output
    assert "prompt_order" not in tickets_workspace.store.settings()  # nothing was changed


def test_config_sets_lists_and_unsets(tickets_workspace: Workspace) -> None:
    store = tickets_workspace.path
    assert run(store, "config", "llm_url", "http://localhost:11434/v1").exit_code == 0
    assert run(store, "config", "prompt_k", "3").exit_code == 0
    listing = run(store, "config")
    assert "llm_url = http://localhost:11434/v1" in listing.stdout
    assert "prompt_k = 3" in listing.stdout
    assert "llm_model = (unset)" in listing.stdout
    assert run(store, "config", "llm_url", "--unset").exit_code == 0
    assert tickets_workspace.config("llm_url") == {"llm_url": None}
    assert "llm_url" not in tickets_workspace.store.settings()
    assert run(store, "config", "--unset").exit_code == 2


def test_backends_are_found_through_entry_points() -> None:
    assert "openai" in available()
    backend = load(LLMConfig(url="http://localhost:8000/v1"))
    assert backend.endpoint == "http://localhost:8000/v1/chat/completions"
    with pytest.raises(ConfigError, match=r"LLM backend 'nope'.*installed: .*openai"):
        load(LLMConfig(url="http://localhost:8000/v1", backend="nope"))


def test_the_key_comes_from_the_environment_only() -> None:
    assert api_key({"OPENAI_API_KEY": "b"}) == "b"
    assert api_key({"FEWSHOT_LLM_API_KEY": "a", "OPENAI_API_KEY": "b"}) == "a"
    config = resolve(None, {"llm_url": "http://h/v1"}, {"OPENAI_API_KEY": SECRET})
    assert config is not None and config.api_key == SECRET
    assert SECRET not in repr(config)


def test_the_api_key_is_sent_but_never_written_or_shown(
    tickets_workspace: Workspace, server: ChatServer, dead_url: str
) -> None:
    env = {"FEWSHOT_LLM_API_KEY": SECRET}
    store = tickets_workspace.path
    server.script(Reply("refund"), Reply("no idea"), *[Reply(status=500, retry_after="0")] * 3)
    results = [
        run(store, "config", "llm_url", server.url, env=env),
        run(store, "config", "llm_model", "m", env=env),
        run(store, "classify", QUERY, "--explain", "--format", "json", env=env),
        run(store, "classify", QUERY, "--format", "csv", env=env),
        run(store, "classify", QUERY, env=env),
        run(store, "classify", QUERY, "--llm-url", dead_url, env=env),
        run(store, "prompt", QUERY, "--format", "json", env=env),
        run(store, "config", env=env),
        run(store, "config", "llm_api_key", SECRET, env=env),
        run(store, "classify", QUERY, "--llm-url", "ftp://x", env=env),
        run(store, "status", env=env),
    ]
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert "FEWSHOT_LLM_API_KEY" in results[8].stderr  # the key is refused, with the fix
    fallbacks = [json.loads(r.stdout.splitlines()[-1]) for r in (results[4], results[5])]
    assert [f["fallback"] for f in fallbacks] == ["http 500", "connection refused"]
    assert [r.headers.get("Authorization") for r in server.chats] == [f"Bearer {SECRET}"] * 5
    for result in results:
        assert SECRET not in result.output + result.stdout + result.stderr
    files = [p for p in store.rglob("*") if p.is_file()]
    assert files  # the database, its WAL and the index cache
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


# -- fewshot prompt ---------------------------------------------------------------------------


def test_prompt_prints_the_messages_without_sending_them(
    tickets_workspace: Workspace, server: ChatServer
) -> None:
    store = tickets_workspace.path
    expected = retrieval(tickets_workspace, k=3)
    result = run(store, "prompt", QUERY, "--k", "3", "--llm-url", server.url, "--llm-model", "m")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"# POST {server.url}/chat/completions  model: m\n")
    assert "[system]" in result.stdout
    assert result.stdout.rstrip().endswith(f"[user]\nText: {QUERY}")
    for near in expected.neighbors or ():
        assert f"[user]\nText: {near.text}\n\n[assistant]\n{near.label}" in result.stdout
    shown = json.loads(run(store, "prompt", QUERY, "--k", "3", "--format", "json").stdout)
    assert shown["endpoint"] is None
    assert shown["labels"] == LABELS
    sent = [n.text for n in reversed(expected.neighbors or ())]
    assert [d["text"] for d in shown["demonstrations"]] == sent
    assert shown["messages"][-1] == {"role": "user", "content": f"Text: {QUERY}"}
    assert server.requests == []


def test_prompt_settings_change_the_prompt(tickets_workspace: Workspace) -> None:
    tickets_workspace.config("prompt_selection", "diverse")
    tickets_workspace.config("prompt_k", "4")
    preview = tickets_workspace.prompt(QUERY)
    assert sorted(n.label for n in preview.prompt.demonstrations) == LABELS
    tickets_workspace.config("prompt_selection", "top-k")
    top_k = tickets_workspace.prompt(QUERY)
    assert len(top_k.prompt.demonstrations) == 4
    assert {n.label for n in top_k.prompt.demonstrations} != set(LABELS)  # the control


def test_the_readme_llm_commands_run(tickets_workspace: Workspace, dead_url: str) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Answering with a language model", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 7
    outputs = []
    for line in lines:
        # As written, but where nothing listens (a real Ollama on this machine must not answer).
        args = shlex.split(re.sub(r"http://localhost:\d+/v1", dead_url, line))
        assert args[0] == "fewshot"
        result = run(tickets_workspace.path, *args[1:])
        assert result.exit_code == 0, (line, result.output)
        outputs.append((args[1], result.stdout))
    classified = [json.loads(out) for command, out in outputs if command == "classify"]
    assert [c["fallback"] for c in classified] == ["connection refused"] * 2
