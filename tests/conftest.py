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
