"""Several runs' tables side by side (``collab report --compare``)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from collab.report.section import Section

_STAMP = re.compile(r"-\d{8}-\d{6}-[0-9a-f]{6}$")


def merge_tables(runs: list[str], tables: list[Section | None]) -> Section:
    """One section for several runs, rows lined up on the key columns.

    A one-value table gets a column per run; a wider one a ``run`` column, each key's rows together.
    """
    first = next(t for t in tables if t is not None)
    keys, columns = first.keys, first.columns[first.keys:]
    rows: dict[tuple[str, ...], dict[int, list[str]]] = {}
    for index, table in enumerate(tables):
        for row in table.rows if table is not None else []:
            rows.setdefault(tuple(row[:keys]), {})[index] = row[keys:]
    if len(columns) == 1:
        merged = [[*key, *(cells.get(i, [""])[0] for i in range(len(runs)))] for key, cells in rows.items()]
        return Section(first.title, first.columns[:keys] + runs, merged, keys, first.note)
    merged = [[*key, runs[i], *cells[i]] for key, cells in rows.items() for i in sorted(cells)]
    return Section(first.title, [*first.columns[:keys], "run", *columns], merged, keys + 1, first.note)


def combine(names: list[str], per_run: list[list[Section]]) -> list[Section]:
    """The sections of several runs, each title once: merged, or one per run where columns differ
    (a handoff matrix over different agents). A title only some runs have keeps its place."""
    if len(per_run) == 1:
        return per_run[0]
    titles: list[str] = []
    for found in per_run:
        at = 0
        for section in found:
            if section.title in titles:
                at = titles.index(section.title) + 1
            else:
                titles.insert(at, section.title)
                at += 1
    built: list[Section] = []
    for title in titles:
        tables = [next((s for s in found if s.title == title), None) for found in per_run]
        if len({tuple(t.columns) for t in tables if t is not None}) == 1:
            built.append(merge_tables(names, tables))
        else:
            built += [replace(t, title=f"{t.title} · {name}")
                      for name, t in zip(names, tables, strict=True) if t is not None]
    return built


def short_names(paths: list[Path]) -> list[str]:
    """Run labels: the scenario's name and the models its engines ran (the folder name without its
    ``-YYYYMMDD-HHMMSS-xxxxxx`` stamp when the run has no scenario.yaml), plus the stamp's id where
    that makes two alike."""
    bases = [run_title(p) or _STAMP.sub("", p.name) or p.name for p in paths]
    return [base if bases.count(base) == 1 else f"{base}-{p.name[-6:]}" for base, p in zip(bases, paths, strict=True)]


def _scenario(path: Path) -> dict[str, Any]:
    try:
        scenario = yaml.safe_load((path / "scenario.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return scenario if isinstance(scenario, dict) else {}


def _model(engine: Any, name: str) -> str:
    engine = engine if isinstance(engine, dict) else {}
    return str(engine.get("model") or engine.get("kind") or name).rstrip("/").rsplit("/", 1)[-1]


def agent_models(path: Path) -> dict[str, str]:
    """Agent -> the model its engine ran (the last part of the model id), from the run's scenario.yaml."""
    scenario = _scenario(path)
    engines = scenario.get("engines") or {}
    return {name: _model(engines.get(agent.get("engine")), name)
            for name, agent in (scenario.get("agents") or {}).items()
            if isinstance(agent, dict) and agent.get("engine") in engines}


def run_title(path: Path) -> str | None:
    """``scenario · model, model`` from a run's resolved scenario.yaml (None when it has none)."""
    scenario = _scenario(path)
    if not scenario.get("name"):
        return None
    models = dict.fromkeys(_model(e, name) for name, e in (scenario.get("engines") or {}).items())
    return f"{scenario['name']} · {', '.join(models)}" if models else str(scenario["name"])
