"""What every episode view of one run shares: agent colours and roles, the turn graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collab.display.graph import Topology
from collab.display.style import Palette
from collab.log.store import SCENARIO, EpisodeRecord
from collab.scenario import ScenarioError, load


@dataclass
class RunContext:
    """What the displays know about a run as a whole (agents, their colours, its topology)."""

    name: str
    palette: Palette
    topology: Topology
    injectors: set[str]
    observed: bool = False
    """No scenario could be read: the topology and roles come from the episodes (see ``learn``)."""

    @classmethod
    def load(cls, path: Path, records: list[EpisodeRecord]) -> RunContext:
        """From the run's resolved ``scenario.yaml``; from the episodes themselves where it cannot be read."""
        try:
            scenario = load(Path(path) / SCENARIO, files=False).scenario
        except (ScenarioError, OSError):
            return cls.from_records(Path(path).name, records)
        return cls(
            Path(path).name, Palette(scenario.agents), Topology.from_scenario(scenario),
            {name for name, agent in scenario.agents.items() if agent.role == "injector"},
        )

    @classmethod
    def from_records(cls, name: str, records: list[EpisodeRecord]) -> RunContext:
        """The context of a run from its finished episodes."""
        palette = Palette(span.agent for record in records for span in record.spans)
        context = cls(name, palette, Topology(""), set(), observed=True)
        context.learn(records)
        return context

    def learn(self, records: list[EpisodeRecord]) -> None:
        """Take in episodes that arrived since (following a run with no readable scenario)."""
        if self.observed:
            self.topology = Topology.observed(records)
            self.injectors = {s.agent for r in records for s in r.spans if s.kind == "injected"}
