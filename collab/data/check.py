"""Check that every file a scenario names exists and reads cleanly, before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from collab.data.errors import DataError
from collab.data.files import read_text
from collab.data.pools import load_pool
from collab.data.problems import load_problems
from collab.scenario.errors import Loc
from collab.scenario.schema import Scenario


def resolve(base: Path, name: str) -> Path:
    """``name`` as a path: absolute as is, relative from ``base``."""
    path = Path(name)
    return path if path.is_absolute() else base / path


def check_files(scenario: Scenario, base: Path) -> list[tuple[Loc, DataError]]:
    """Every problem with the dataset file, pool files and inject files, at the field that names it."""
    found: list[tuple[Loc, DataError]] = []

    def attempt(loc: Loc, read: Callable[[], object]) -> None:
        try:
            read()
        except DataError as error:
            found.append((loc, error))

    dataset = scenario.dataset
    if dataset.file:
        attempt(("dataset", "file"), partial(load_problems, dataset.model_copy(update={"ids": None}), base))
    for name, pool in scenario.pools.items():
        for index, entry in enumerate(pool.files or []):
            if isinstance(entry, str):
                loc: Loc = ("pools", name, "files", index)
                files = [(resolve(base, entry), pool.agent)]
            else:
                loc, files = ("pools", name, "files", index, "file"), [(resolve(base, entry.file), entry.agent)]
            attempt(loc, partial(load_pool, name, files))
    for name, agent in scenario.agents.items():
        if agent.inject is not None and agent.inject.file is not None:
            attempt(("agents", name, "inject", "file"), partial(read_text, resolve(base, agent.inject.file)))
    return found
