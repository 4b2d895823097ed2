"""A run folder read back as typed objects: what ``collab.load_run`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collab.log.store import MANIFEST, SCENARIO, SUMMARY, EpisodeRecord, RunStore, StoreError


@dataclass
class Run:
    """One run: its resolved scenario, manifest, summary and episodes (typed events, in log order).

    Each episode holds its ``start`` (problem, sample, sweep point, stage, subsets), its ``spans``
    (``turns`` are the spans models wrote), its judge ``values`` and ``verdicts`` and its ``end``
    (``None`` while in flight).
    """

    path: Path
    scenario: dict[str, Any]
    manifest: dict[str, Any]
    summary: dict[str, Any]
    episodes: list[EpisodeRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.path.name


def load_run(path: str | Path) -> Run:
    """Read a run folder (finished, interrupted or still being written)."""
    store = RunStore(Path(path))
    manifest = store.read_json(MANIFEST)
    if manifest is None:
        raise StoreError(f"{path} is not a run folder (no {MANIFEST})")
    scenario_file = store.path / SCENARIO
    scenario = yaml.safe_load(scenario_file.read_text(encoding="utf-8")) if scenario_file.exists() else {}
    return Run(store.path, scenario or {}, manifest, store.read_json(SUMMARY) or {},
               list(store.episodes().values()))
