"""A run read back for the report: its episodes, summary and wall time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collab.events import RunEnd, RunStart
from collab.log.store import SUMMARY, EpisodeRecord, StoreError, group_episodes, open_run
from collab.report.combine import agent_models
from collab.report.summary import summarize


@dataclass
class RunData:
    """A run read back: its episodes, its summary (recomputed, over any stored keys) and wall time.

    ``ok`` holds the finished episodes the tables count: not failed, and not solo stage episodes.
    """

    path: Path
    episodes: dict[str, EpisodeRecord]
    summary: dict[str, Any]
    wall_s: float = 0.0
    ok: list[EpisodeRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.ok = [r for r in self.episodes.values()
                   if r.end is not None and r.end.status == "ok" and r.start.stage is None]

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.path.name

    @classmethod
    def load(cls, path: Path) -> RunData:
        """Read a run folder back."""
        store = open_run(path)
        events = list(store.events())
        wall, started = 0.0, None
        for event in events:
            if isinstance(event, RunStart):
                started = event.t
            elif isinstance(event, RunEnd) and started is not None:
                wall, started = wall + event.t - started, None
        episodes = group_episodes(events)
        saved = store.read_json(SUMMARY) or {}
        if not isinstance(saved, dict):
            raise StoreError(f"{store.path / SUMMARY} is corrupt (not a JSON object)")
        return cls(Path(path), episodes, {**saved, **summarize(episodes), "agent_models": agent_models(path)}, wall)
