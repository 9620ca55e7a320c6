"""`fewshot --help` must stay light: no torch, sentence-transformers, setfit, faiss...

Each check runs in a fresh interpreter (a subprocess is the point here: this process has
long since imported them all).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

HEAVY = (
    "torch",
    "sentence_transformers",
    "setfit",
    "faiss",
    "transformers",
    "sklearn",
    "matplotlib",
)

SCRIPT = f"""
import json, sys
from fewshot.cli import cli
helps = []
for args in (["--help"], *[[name, "--help"] for name in sorted(cli.commands)]):
    try:
        cli(args, prog_name="fewshot")
    except SystemExit as done:
        helps.append((args, done.code))
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print("RESULT " + json.dumps({{"heavy": heavy, "helps": helps}}))
"""


def test_help_of_every_command_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    assert result["heavy"] == []
    commands = {args[0] for args, _ in result["helps"]}
    assert {"--help", "init", "add", "import", "classify", "status", "export"} <= commands
    assert all(code == 0 for _, code in result["helps"])
    assert "Usage: fewshot" in done.stdout


def test_python_m_fewshot_help_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fewshot", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: fewshot" in done.stdout and "classify" in done.stdout
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.MULTILINE)
    assert "fewshot.cli" in imported  # the parse works: importtime listed our own modules
    assert sorted({name.split(".")[0] for name in imported} & set(HEAVY)) == []
