"""The package's shape: dependencies point one way, and modules stay small.

The import graph is built from the source with ``ast``: every ``import`` and ``from ...
import`` of a ``fewshot`` module, at module level, inside functions (lazy imports) and under
``TYPE_CHECKING`` alike. A cycle anywhere fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fewshot"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The fewshot modules ``path`` imports.

    ``from fewshot.tasks import gate`` imports the module ``fewshot.tasks.gate``; ``from
    fewshot.values import Example`` imports ``fewshot.values``. The parent packages that
    Python initialises on the way are not counted: every module of the package shares them.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif node.module in known:
                    found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (each reported once)."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                key = tuple(sorted(path))
                if key not in seen:
                    seen.add(key)
                    found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert edges.get("fewshot.workspace"), "graph not built"
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    edges = graph()
    planted = {**edges, "fewshot.storage.store": edges["fewshot.storage.store"] | {"fewshot.cli"}}
    # cli -> workspace -> ... -> storage.store -> cli
    assert any("fewshot.storage.store" in c and "fewshot.cli" in c for c in cycles(planted))


def test_tasks_never_reach_back_to_the_workspace_or_the_cli() -> None:
    edges = graph()
    for name, targets in edges.items():
        if name.startswith(("fewshot.tasks", "fewshot.storage", "fewshot.stages")):
            assert not targets & {"fewshot.workspace", "fewshot.cli"}, name


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_under_400_lines(name: str) -> None:
    lines = modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{name}: {lines} lines"
