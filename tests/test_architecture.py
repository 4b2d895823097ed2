"""The house rules of ARCHITECTURE.md: which folder may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "collab"

FORBIDDEN = {
    "scenario": {"data", "engines", "judge", "sim", "log", "report", "display", "cli"},
    "data": {"engines", "judge", "sim", "log", "report", "display", "cli"},
    "engines": {"scenario", "data", "judge", "sim", "log", "report", "display", "cli"},
    "judge": {"data", "sim", "log", "report", "display", "cli"},
    "sim": {"display", "cli"},
    "log": {"sim", "display", "cli"},
    "report": {"sim", "display", "cli"},
    "display": {"sim", "cli"},
    "trace": {"scenario", "data", "judge", "sim", "log", "report", "display", "cli"},
    "events": {"scenario", "data", "engines", "judge", "sim", "log", "report", "display", "cli"},
}


def imported_parts(path: Path) -> set[str]:
    """The top-level collab parts (``sim``, ``log``, ...) a module imports."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "collab" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0].removesuffix(".py")
        if part in FORBIDDEN:
            found.append((part, path))
    return found


def test_every_part_is_checked():
    assert {part for part, _ in modules()} == set(FORBIDDEN)


@pytest.mark.parametrize(("part", "path"), modules(),
                         ids=lambda x: str(x.relative_to(PACKAGE)) if isinstance(x, Path) else x)
def test_imports_follow_the_flow(part: str, path: Path):
    bad = imported_parts(path) & FORBIDDEN[part]
    assert not bad, f"{path.relative_to(PACKAGE)} ({part}/) imports {sorted(bad)}"


def test_the_rule_catches_a_back_edge(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("from collab.log.store import RunStore\nimport collab.report.summary\n")
    assert imported_parts(module) == {"log", "report"}
