"""Shared fixtures. Tests use the real packaged encoder, real FAISS and real SQLite."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The packaged encoder needs no network; make sure nothing tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from chat_server import ChatServer

from fewshot.onnx_encoder import cached_export_dir
from fewshot.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATASETS = Path(os.environ.get("FEWSHOT_DATASETS", ROOT.parent / "shared" / "datasets"))


def read_dataset(name: str, split: str) -> list[dict[str, str]]:
    """Rows of ../shared/datasets/<name>/<split>.jsonl, or skip the test when absent."""
    path = DATASETS / name / f"{split}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared evaluation datasets are not on this machine")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


LLM_ENV = ("FEWSHOT_LLM_URL", "FEWSHOT_LLM_MODEL", "FEWSHOT_LLM_API_KEY", "OPENAI_API_KEY")


@pytest.fixture
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLM setting or key from the environment (use with ``pytest.mark.usefixtures``)."""
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """The local chat-completions server (tests/chat_server.py), started and stopped."""
    with ChatServer() as chat:
        yield chat


@pytest.fixture(scope="session", autouse=True)
def onnx_export() -> Path:
    """The packaged encoder's ONNX export, in the per-user cache (as a user's second run has).

    Made here once if absent (``~/.cache/fewshot/onnx/``, or ``$FEWSHOT_CACHE_DIR``), through
    the torch path that makes it, so every test, and every CLI subprocess, runs the fast path
    a user gets and none sees the one-time "exporting it" line. Tests of a missing export
    point ``FEWSHOT_CACHE_DIR`` at a directory of their own.
    """
    from fewshot.embed import Encoder, resolve_model

    encoder = Encoder("default")
    if encoder.fast is None:
        encoder.encode(["make the export"])
    assert encoder.fast is not None, "the packaged encoder could not be exported to ONNX"
    return cached_export_dir(resolve_model("default"))


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A workspace directory that does not exist yet."""
    return tmp_path / "ws"


@pytest.fixture
def workspace(store_dir: Path) -> Iterator[Workspace]:
    """A fresh, empty workspace with the default encoder."""
    ws = Workspace.create(store_dir)
    yield ws
    ws.close()


@pytest.fixture
def tickets_workspace(workspace: Workspace) -> Workspace:
    """A workspace holding examples/tickets.csv (4 labels x 6 support tickets)."""
    workspace.import_file(EXAMPLES / "tickets.csv")
    return workspace
