"""The three kinds of turn: a writer generates, an injector inserts text, a seed places a pool prefix."""

from __future__ import annotations

from collab.scenario.schema import Scenario
from collab.sim.turns.base import Turn, TurnOutcome
from collab.sim.turns.inject import InjectTurn
from collab.sim.turns.seed import SeedTurn
from collab.sim.turns.write import WriteTurn

__all__ = ["InjectTurn", "SeedTurn", "Turn", "TurnOutcome", "WriteTurn", "turn_at"]


def turn_at(scenario: Scenario, node: str) -> Turn:
    """The turn played at graph node ``node``."""
    config = scenario.graph.turns[node]
    if config.seed is not None:
        return SeedTurn(config.seed)
    name = config.agent or node
    agent = scenario.agents[name]
    if agent.role == "injector":
        return InjectTurn(name, agent)
    return WriteTurn(name, agent)
