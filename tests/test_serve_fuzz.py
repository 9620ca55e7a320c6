"""``fewshot serve`` against its own OpenAPI schema: schemathesis sends what the schema
allows (and what it does not) and checks every answer: no 500, a documented status, a
body that matches the schema of that status (``{"error": ...}`` for every error).

A bounded run is part of ``make test``; the slow marker runs many more cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from serve_server import Server

pytest.importorskip("fastapi", reason="the serve extra is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

from fewshot.workspace import Workspace  # noqa: E402

QUICK = 60  # cases of each mode in `make test` (over the 4 operations); LONG under slow
LONG = 500


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("fuzz") / "ws"
    with Workspace.create(store) as ws:
        ws.import_file(EXAMPLES / "tickets.csv", train="never")
        ws.config("train", "never")  # the fuzz adds examples: no training starts
    with Server(store, "--max-batch", "16", "--max-body-bytes", "20000") as running:
        yield running


# A list longer than the schema's maxItems (the server's --max-batch) is refused as too
# large, 413, as the issue asks: a rejection schemathesis does not count by default.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 409, 413, 422]}}}
)


def fuzz(cases: int) -> Any:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same cases every run: a failure here is reproducible
        database=None,
    )


def run_fuzz(server: Server, mode: str, cases: int) -> None:
    """Send ``cases`` requests drawn from the schema (``mode``: positive or negative data)."""
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG)
    strategy = api.as_strategy(GenerationMode(mode))

    @fuzz(cases)
    @given(strategy)
    def check(case: Any) -> None:
        case.call_and_validate()

    check()


# schemathesis's own pytest integration (`from_fixture(...).parametrize()`) does not run on
# pytest 9 (it reads `request.node._nodeid`); its strategies are driven by hypothesis here.


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_breaks_the_schema_or_the_server(fuzzed: Server, mode: str) -> None:
    run_fuzz(fuzzed, mode, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_many_requests_break_neither_the_schema_nor_the_server(fuzzed: Server, mode: str) -> None:
    run_fuzz(fuzzed, mode, LONG)
