"""The turn graph as a side panel: each turn with its agent and successors, the current one lit."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from collab.display.style import Palette, clean
from collab.log.store import EpisodeRecord
from collab.scenario.schema import Scenario


@dataclass
class Topology:
    """Turns in walking order with their agent, and each turn's successors."""

    start: str
    agents: dict[str, str] = field(default_factory=dict)
    edges: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Topology:
        """The topology of a scenario's turn graph."""
        graph = scenario.graph
        order = [graph.start] + [t for t in graph.turns if t != graph.start]
        topology = cls(graph.start, {t: graph.turns[t].agent or t for t in order})
        for edge in graph.edges:
            targets = topology.edges.setdefault(edge.source, [])
            if edge.target not in targets:
                targets.append(edge.target)
        return topology

    @classmethod
    def observed(cls, records: list[EpisodeRecord]) -> Topology:
        """The graph the episodes walked, for runs whose scenario cannot be read back."""
        topology = cls("")
        for record in records:
            previous = None
            for span in record.spans:
                topology.start = topology.start or span.turn
                topology.agents.setdefault(span.turn, span.agent)
                if previous is not None:
                    targets = topology.edges.setdefault(previous, [])
                    if span.turn not in targets:
                        targets.append(span.turn)
                previous = span.turn
        return topology


class TopologyView:
    """Turn list: ``▶`` and reverse video for the turn being written, ``×n`` for visits so far."""

    def __init__(self, topology: Topology, palette: Palette, current: str | None, visits: Counter[str]) -> None:
        self.topology = topology
        self.palette = palette
        self.current = current
        self.visits = visits

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for turn, agent in self.topology.agents.items():
            here = turn == self.current
            line = Text("▶ " if here else "  ")
            line.append(clean(turn), self.palette.style(agent, bold=True, reverse=here))
            if agent != turn:
                line.append(f" ({clean(agent)})", self.palette.style(agent))
            if self.visits[turn]:
                line.append(f" ×{self.visits[turn]}", "dim")
            targets = self.topology.edges.get(turn, [])
            if targets:
                line.append(" → " + ", ".join(clean(t) for t in targets), "dim")
            yield line
