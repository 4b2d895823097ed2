"""The turn graph as a networkx DiGraph and what runs ask of it (writers, engines in use)."""

from __future__ import annotations

import networkx as nx

from collab.scenario.schema import Scenario


def build_graph(scenario: Scenario) -> nx.DiGraph:
    """Turns as nodes (with their agent), edges with their index, ``repeat`` and ``when``."""
    graph = nx.DiGraph()
    for name, turn in scenario.graph.turns.items():
        graph.add_node(name, agent=turn.agent or name)
    for index, edge in enumerate(scenario.graph.edges):
        graph.add_edge(edge.source, edge.target, index=index, repeat=edge.repeat, when=edge.when)
    return graph


def writers(scenario: Scenario) -> list[str]:
    """The agents that generate."""
    return [name for name, agent in scenario.agents.items() if agent.role == "writer"]


def next_writer(scenario: Scenario, turn: str, *, inclusive: bool = False) -> str | None:
    """The agent of the first writer turn the graph reaches after ``turn`` (or at it, when ``inclusive``)."""
    graph = build_graph(scenario)
    order = list(nx.bfs_tree(graph, turn)) if turn in graph else []
    for node in order if inclusive else order[1:]:
        config = scenario.graph.turns[node]
        agent = scenario.agents.get(config.agent or node)
        if config.seed is None and agent is not None and agent.role == "writer":
            return config.agent or node
    return None


def engines_in_use(scenario: Scenario) -> set[str]:
    """Engines some agent generates with: writers taking turns or running in a stage that fills a pool,
    injector models, the judge's probe. (A guide known only by its recorded trajectories needs none.)"""
    acting = {turn.agent or name for name, turn in scenario.graph.turns.items() if turn.seed is None}
    for pool in scenario.pools.values():
        if pool.stage in scenario.stages and pool.run is None:
            acting |= set(scenario.stages[pool.stage].agents or writers(scenario))
    if scenario.judge.attribution.probe is not None:
        acting.add(scenario.judge.attribution.probe)
    used = set()
    for name in acting & set(scenario.agents):
        agent = scenario.agents[name]
        used |= {agent.engine} if agent.engine else set()
        used |= {agent.inject.model.engine} if agent.inject is not None and agent.inject.model is not None else set()
    return used


def model_under_test(scenario: Scenario) -> str | None:
    """The first writer the graph reaches from its start: whose solve rates pick individual subsets."""
    return next_writer(scenario, scenario.graph.start, inclusive=True)
