"""One workspace, many clients: ``fewshot serve`` answers while others write and train.

Four clients classify over HTTP the whole time; a fifth adds examples over HTTP one at a
time; the add that crosses the SetFit threshold starts a real background training (tiny:
``max_steps`` 2, in its own process); ``fewshot train --wait`` waits for it and
``fewshot rollback 1`` makes its version serve whatever the gate said (a two-step training
is a tie the gate may keep out). Nothing may be lost: every request is answered 200, no
answer comes from a half-written model (no ``fallback``), every added example is in the
workspace, and the same server process answers from the new version at once.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from serve_server import Server
from test_setfit import BILLING, LOGIN, SHIPPING

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fewshot.cli import cli
from fewshot.workspace import Workspace

QUERIES = ["there is a strange charge on my credit card bill", "my parcel is still not here"]


def fewshot(store: Path, *args: str) -> str:
    """Run a CLI command on the workspace (its own connection, as another terminal's)."""
    result = CliRunner().invoke(cli, ["--store", str(store), *args])
    assert result.exit_code == 0, result.output
    return result.output


class Clients:
    """Threads that classify until told to stop; every answer is kept."""

    def __init__(self, server: Server, count: int) -> None:
        self.server = server
        self.stop = threading.Event()
        self.answers: list[tuple[str, int, Any]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(count)]

    def run(self, i: int) -> None:
        while not self.stop.is_set():
            query = QUERIES[i % len(QUERIES)]
            status, record = self.server.call("POST", "/classify", {"text": query})
            with self.lock:
                self.answers.append((query, status, record))

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_many_clients_while_examples_are_added_and_a_training_promotes(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    with Workspace.create(store, min_per_label=8) as ws:
        for key, value in (("max_steps", "2"), ("gate_folds", "2"), ("retrain_growth", "1e6")):
            ws.config(key, value)
        ws.add(BILLING, "billing", train="never")
        ws.add(SHIPPING[:7], "shipping", train="never")
    added: list[tuple[int, Any]] = []

    def add_login() -> None:  # 7 login texts: below the threshold, they start no training
        for text in LOGIN:
            added.append(server.call("POST", "/examples", {"texts": [text], "label": "login"}))

    with Server(store) as server, Clients(server, 4) as clients:
        adder = threading.Thread(target=add_login)
        adder.start()
        status, crossing = server.call(
            "POST", "/examples", {"texts": SHIPPING[7:], "label": "shipping"}
        )
        assert (status, crossing["training"]) == (200, "background"), crossing
        assert fewshot(store, "train", "--wait").startswith("Trained SetFit model v1")
        assert fewshot(store, "rollback", "1") == "Now serving: v1.\n"
        status, after = server.call("POST", "/classify", {"texts": QUERIES})
        adder.join()
        served = server.call("GET", "/status")[1]
        assert server.process is not None and server.process.poll() is None  # no restart
    assert status == 200
    assert [r["stage"] for r in after] == ["setfit", "setfit"]
    assert [r["label"] for r in after] == ["billing", "shipping"]
    assert served["model"] == 1 and served["stage"] == "setfit"
    answers = clients.answers
    assert len(answers) > 20, len(answers)
    assert {code for _, code, _ in answers} == {200}, [a for a in answers if a[1] != 200][:3]
    assert not [r for _, _, r in answers if "fallback" in r]  # never a half-written model
    assert {r["stage"] for _, _, r in answers} <= {"retrieval", "setfit"}
    # batched with others' requests, each client still gets the answer to its own text
    labels = dict(zip(QUERIES, ["billing", "shipping"]))
    assert all(r["text"] == q and r["label"] == labels[q] for q, _, r in answers)
    assert [code for code, _ in added] == [200] * len(LOGIN)
    assert sum(body["added"] for _, body in added) == len(LOGIN)
    exported = CliRunner().invoke(cli, ["--store", str(store), "export"]).stdout
    rows = {(r["text"], r["label"]) for r in map(json.loads, exported.splitlines())}
    expected = {(t, "billing") for t in BILLING} | {(t, "shipping") for t in SHIPPING}
    assert rows == expected | {(t, "login") for t in LOGIN}
    assert served["examples"] == len(BILLING) + len(SHIPPING) + len(LOGIN)
