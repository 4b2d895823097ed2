"""Loading a scenario with its overrides and expanding its sweep into points."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collab.scenario.checks import check
from collab.scenario.errors import ScenarioError
from collab.scenario.files import check_files, check_sweep_path
from collab.scenario.loader import (
    Source,
    load_source,
    set_path,
    validate,
    with_overrides,
)
from collab.scenario.schema import Scenario


@dataclass
class Point:
    """One sweep point: the overrides it applies and the scenario they give."""

    values: dict[str, Any]
    scenario: Scenario


@dataclass
class Loaded:
    """A loaded scenario: its source, the resolved scenario and its sweep points."""

    path: Path
    source: Source
    scenario: Scenario
    points: list[Point]


def _sweep_path(data: dict[str, Any], key: str) -> str:
    """``turns.x.until.tokens`` is accepted for ``graph.turns.x.until.tokens``."""
    head = key.split(".", 1)[0]
    if head not in Scenario.model_fields and head in ("turns", "edges", "start"):
        return f"graph.{key}"
    return key


def load(path: str | Path, overrides: list[str] | None = None, *, base: Path | None = None,
         files: bool = True) -> Loaded:
    """Parse, override, validate and check a scenario and every point of its sweep.

    ``files``: check that the files it names exist, relative to ``base`` (default: its folder); a run
    folder's copy of a scenario is loaded without (its files were read when it ran).
    """
    source = with_overrides(load_source(path), overrides or [])
    scenario = validate(source.data, source)
    problems = check(scenario, source)
    sweep_paths = (check_sweep_path(source.data, key, _sweep_path(source.data, key), source) for key in scenario.sweep)
    problems += [problem for problem in sweep_paths if problem is not None]
    missing = check_files(scenario, source, base or Path(path).resolve().parent) if files else []
    if problems:
        raise ScenarioError(problems + missing)
    points: list[Point] = []
    keys = list(scenario.sweep)
    for combo in itertools.product(*(scenario.sweep[k] for k in keys)):
        values = dict(zip(keys, combo, strict=False))
        data = json.loads(json.dumps(source.data, default=str))
        data.pop("sweep", None)
        for key, value in values.items():
            try:
                set_path(data, _sweep_path(data, key), value)
            except (ValueError, IndexError, AttributeError, TypeError):
                problem = source.problem(("sweep", key), "no such place in the scenario", at_key=True)
                raise ScenarioError([problem]) from None
        try:
            point = validate(data, source)
        except ScenarioError as error:
            detail = "; ".join(f"{p.field}: {p.message}" for p in error.problems)
            bad = [source.problem(("sweep", k, scenario.sweep[k].index(v)),
                                  f"value {v!r} gives an invalid scenario: {detail}")
                   for k, v in values.items()]
            raise ScenarioError(bad[-1:]) from None
        problems = check(point, source)
        if problems:
            raise ScenarioError(problems)
        points.append(Point(values, point))
    if missing:  # after the scenario's own problems: a file is often missing because of them
        raise ScenarioError(missing)
    return Loaded(Path(path), source, scenario, points)


def point_label(point: dict[str, Any]) -> str:
    """``tokens=32`` for ``{"graph.turns.solver.until.tokens": 32}``; full keys where short ones clash."""
    if not point:
        return "-"
    short = [key.rsplit(".", 1)[-1] for key in point]
    names = short if len(set(short)) == len(short) else list(point)
    return ", ".join(f"{name}={value}" for name, value in zip(names, point.values(), strict=False))
