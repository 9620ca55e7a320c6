"""Rewrite tests/golden/prompt_*.json from the current prompt builder.

Run it only after an intended change of the prompt's wording, then review ``git diff tests/golden``:

    python tests/golden/regenerate.py

The tests never run this script; tests/test_prompt.py only compares against these files.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def main() -> None:
    """Write one golden file per case of tests/test_prompt.py."""
    sys.path.insert(0, str(TESTS))
    cases = importlib.import_module("test_prompt")
    for name in sorted(cases.CASES):
        record = cases._record(cases.QUERY, cases.CASES[name])
        path = cases.GOLDEN / f"prompt_{name}.json"
        path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(TESTS.parent)}")


if __name__ == "__main__":
    main()
