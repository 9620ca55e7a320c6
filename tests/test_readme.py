"""The README's commands stay true: `make run` / `make test` first, and "Using it" works.

The "Using it" commands run in-process through CliRunner against a temporary store, from the
repository root. A line is skipped only when it reads a file that the README does not
provide (``inbox.txt``); the test says which ones it skipped and checks that reason.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from fewshot.cli import cli
from fewshot.workspace import Workspace

README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_quick_start_shows_make_run_and_make_test_first() -> None:
    commands = [line.split("#")[0].strip() for line in bash_lines(section("Quick start"))]
    assert commands[:2] == ["make run", "make test"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("target", "job"), [("run", "bash examples/run_demo.sh"), ("test", "-m pytest -m")]
)
def test_make_run_and_make_test_do_the_whole_set_up(target: str, job: str) -> None:
    # -n prints what a fresh clone would run (-B: as if nothing were built yet), runs nothing
    plan = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    steps = [line for line in plan if not line.startswith("#")]
    venv = next(i for i, s in enumerate(steps) if "-m venv .venv" in s)
    torch = next(i for i, s in enumerate(steps) if "pip install -q torch==2.13.0" in s)
    editable = next(i for i, s in enumerate(steps) if "pip install -q -e '.[dev]'" in s)
    work = next(i for i, s in enumerate(steps) if job in s)
    assert venv < torch < editable < work


def test_ci_runs_make_test_and_fails_when_it_fails() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert script.strip().splitlines()[-1] == "make test"


def _readme_commands() -> list[tuple[str, list[str]]]:
    return [
        (line.split(" #")[0].strip(), shlex.split(line, comments=True))
        for line in bash_lines(section("Using it"))
        if line.startswith("fewshot ")
    ]


def _missing_input(args: list[str]) -> str | None:
    """The input file a command needs that the repository does not have, if any."""
    for i, arg in enumerate(args):
        reads = i > 0 and args[i - 1] in {"--input", "import", "eval", "label"}
        if reads and arg != "-" and not (ROOT / arg).exists():
            return arg
    return None


def test_the_using_it_commands_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the README's paths (examples/...) are relative to the repo
    store = str(tmp_path / "ws")
    # The two adds and the import bring refund and shipping to the SetFit threshold (8), so a
    # user's run would train here; training has its own tests, this one checks the commands.
    with Workspace.create(store) as ws:
        ws.store.set_setting("train", "never")
    runner = CliRunner()
    ran, skipped, outputs = [], [], {}
    for line, command in _readme_commands():
        args = command[1:]
        if ">" in args:  # a shell redirect: the output is checked here instead
            args = args[: args.index(">")]
        missing = _missing_input(args)
        if missing is not None:
            skipped.append((missing, line))
            continue
        result = runner.invoke(cli, ["--store", store, *args])
        assert result.exit_code == 0, (command, result.output, result.exception)
        ran.append(args[0])
        outputs[line] = result.stdout

    # Skipped because the README does not ship inbox.txt (it is the user's own file).
    assert [name for name, _ in skipped] == ["inbox.txt"], skipped
    assert {"add", "import", "classify", "status", "export"} <= set(ran)

    explained = outputs['fewshot classify "when will my order arrive?" --explain']
    record = json.loads(explained)
    assert record["label"] == "shipping"
    assert record["neighbors"][0]["label"] == "shipping"
    exported = outputs["fewshot export --format csv > labels.csv"].splitlines()
    assert exported[0] == "text,label,source"
    assert len(exported) == 1 + 4 + 24  # the two adds and examples/tickets.csv


def test_the_make_run_demo_classifies_with_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/run_demo.sh (what `make run` runs), each command in-process."""
    monkeypatch.chdir(ROOT)
    script = (ROOT / "examples" / "run_demo.sh").read_text(encoding="utf-8")
    commands = [
        shlex.split(line)[1:] for line in script.splitlines() if line.startswith('"$fewshot"')
    ]
    assert [c[0] for c in commands] == ["import", "classify", "status"]
    runner = CliRunner()
    outputs = []
    for args in commands:
        result = runner.invoke(cli, args, env={"FEWSHOT_STORE": str(tmp_path / "ws")})
        assert result.exit_code == 0, (args, result.output, result.exception)
        outputs.append(result.stdout)

    table = outputs[1]
    for label in ("shipping", "refund", "account", "technical"):
        assert re.search(rf"\[{label}\] ", table), f"no {label} neighbour shown"
    assert "24 examples" in outputs[2]
