"""Checks that need the scenario's folder: files it names, and sweep keys that name real places."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collab.scenario.errors import Loc, Problem, fields_at, unknown_key_message
from collab.scenario.loader import Source
from collab.scenario.schema import Scenario


def named_files(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Every local file the scenario reads, with where it names it."""
    files: list[tuple[Loc, str]] = []
    if scenario.dataset.file:
        files.append((("dataset", "file"), scenario.dataset.file))
    for name, pool in scenario.pools.items():
        for index, entry in enumerate(getattr(pool, "files", None) or []):
            file = entry if isinstance(entry, str) else entry.file
            files.append((("pools", name, "files", index) + (() if isinstance(entry, str) else ("file",)), file))
    for name, agent in scenario.agents.items():
        if agent.inject is not None and agent.inject.file:
            files.append((("agents", name, "inject", "file"), agent.inject.file))
    return files


def check_files(scenario: Scenario, source: Source, base: Path) -> list[Problem]:
    """A problem for each named file that does not exist (relative names start at the scenario's folder)."""
    problems = []
    for loc, name in named_files(scenario):
        path = Path(name).expanduser()
        if not (path if path.is_absolute() else base / path).exists():
            problems.append(source.problem(loc, f"no such file: {name}"))
    return problems


def check_sweep_path(data: dict[str, Any], key: str, path: str, source: Source) -> Problem | None:
    """A problem when a sweep key walks through a key the scenario does not have (a typo)."""
    parts = path.split(".")
    current: Any = data
    for depth, part in enumerate(parts):
        step: str | int = int(part) if isinstance(current, list) and part.isdigit() else part
        if isinstance(current, dict) and step in current:
            current = current[step]
            continue
        if isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current):
            current = current[step]
            continue
        valid = fields_at(Scenario, tuple(parts[:depth]), current)
        if depth == len(parts) - 1 and part in valid:
            return None  # a field left at its default
        where = ".".join(parts[:depth]) or "the scenario"
        return source.problem(("sweep", key), f"no `{part}` in {where}: " + unknown_key_message(part, valid),
                              at_key=True)
    return None
