"""One registry of every setting: `fewshot config` lists, sets, checks and unsets them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fewshot.cli import cli
from fewshot.settings import SETTINGS, parse
from fewshot.workspace import Workspace


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args])


def listing(store: Path) -> dict[str, dict[str, object]]:
    result = run(store, "config", "--format", "json")
    assert result.exit_code == 0, result.output
    return {entry["key"]: entry for entry in json.loads(result.stdout)}


def test_config_lists_every_setting_with_value_default_and_source(
    tickets_workspace: Workspace,
) -> None:
    store = tickets_workspace.path
    shown = listing(store)
    for key in ("k", "min_per_label", "max_steps", "gate_folds", "train", "llm_url", "prompt_k"):
        assert key in shown
    assert list(shown) == list(SETTINGS)
    assert shown["k"] == {
        "key": "k", "value": 10, "default": 10, "source": "default",
        "help": SETTINGS["k"].help,
    }  # fmt: skip
    assert shown["model"]["value"] == "sentence-transformers/all-MiniLM-L6-v2"
    text = run(store, "config")
    assert text.exit_code == 0
    assert "k = 10\n" in text.stdout
    assert "min_per_label = 8  (workspace; default 8)\n" in text.stdout  # stored by init
    assert "llm_url = (unset)\n" in text.stdout


def test_config_k_sets_the_neighbours_that_classify_uses(tickets_workspace: Workspace) -> None:
    store = tickets_workspace.path
    before = run(store, "classify", "Where is my parcel?", "--explain", "--format", "json")
    assert len(json.loads(before.stdout)[0]["neighbors"]) == 10
    result = run(store, "config", "k", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == "k = 3  (workspace; default 10)\n"
    assert listing(store)["k"]["source"] == "workspace"
    after = run(store, "classify", "Where is my parcel?", "--explain", "--format", "json")
    assert len(json.loads(after.stdout)[0]["neighbors"]) == 3
    assert run(store, "config", "k").stdout == "k = 3  (workspace; default 10)\n"
    assert run(store, "config", "k", "--unset").stdout == "k = 10\n"
    assert listing(store)["k"] == listing(store)["k"] | {"value": 10, "source": "default"}


def test_an_unknown_key_lists_every_key_and_changes_nothing(tickets_workspace: Workspace) -> None:
    store = tickets_workspace.path
    stored = dict(tickets_workspace.store.settings())
    result = run(store, "config", "neighbours", "5")
    assert result.exit_code == 1
    assert "Error: unknown setting 'neighbours'; expected one of:" in result.stderr
    for key in SETTINGS:
        assert key in result.stderr
    assert "Traceback" not in result.output
    secret = run(store, "config", "llm_api_key", "sk-123")
    assert "The API key is never stored" in secret.stderr
    assert tickets_workspace.store.settings() == stored


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("llm_timeout", "nan"),
        ("llm_timeout", "inf"),
        ("retrain_growth", "inf"),
        ("learning_rate", "inf"),
        ("learning_rate", "0"),
        ("gate_margin", "1"),
        ("new_label_confidence", "1.5"),
        ("k", "0"),
        ("k", "2.5"),
        ("prompt_context_chars", "100"),
        ("train", "sometimes"),
        ("loss", "triplet"),
        ("epochs", "0"),
        ("epochs", "nan"),
        ("llm_url", "ftp://example"),
    ],
)
def test_values_out_of_range_are_refused(key: str, value: str, tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        stored = dict(ws.store.settings())
        result = run(ws.path, "config", key, value)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ")
        assert "Traceback" not in result.output
        assert ws.store.settings() == stored


def test_an_encoder_that_does_not_load_is_refused(tickets_workspace: Workspace) -> None:
    result = run(tickets_workspace.path, "config", "model", "other-model")
    assert result.exit_code == 1
    assert "Error: could not load the encoder 'other-model'" in result.stderr
    assert tickets_workspace.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_parse_gives_typed_values() -> None:
    assert parse("k", "5") == 5
    assert parse("gate_margin", " 0.02 ") == 0.02
    assert parse("train", "never") == "never"
    assert parse("llm_url", "http://localhost:11434/v1") == "http://localhost:11434/v1"
