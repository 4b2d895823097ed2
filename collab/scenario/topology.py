"""The turn graph as a networkx DiGraph, its checks, and a terminal drawing."""

from __future__ import annotations

import networkx as nx

from collab.scenario.errors import Problem
from collab.scenario.loader import Source
from collab.scenario.schema import Scenario


def build_graph(scenario: Scenario) -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, turn in scenario.graph.turns.items():
        graph.add_node(name, agent=turn.agent or name)
    for index, edge in enumerate(scenario.graph.edges):
        graph.add_edge(edge.source, edge.target, index=index, repeat=edge.repeat, when=edge.when)
    return graph


def turn_agent(scenario: Scenario, turn: str) -> str:
    return scenario.graph.turns[turn].agent or turn


def check(scenario: Scenario, source: Source) -> list[Problem]:
    """References between sections and the shape of the graph."""
    problems: list[Problem] = []
    engines, agents, turns = scenario.engines, scenario.agents, scenario.graph.turns
    pools = set(scenario.pools)

    def missing(loc: tuple, kind: str, name: str, known: object) -> None:
        names = ", ".join(sorted(known)) or "none defined"
        problems.append(source.problem(loc, f"unknown {kind} `{name}`; expected one of: {names}"))

    for name, agent in agents.items():
        if agent.engine is not None and agent.engine not in engines:
            missing(("agents", name, "engine"), "engine", agent.engine, engines)
        inject = agent.inject
        if inject is not None and inject.model is not None and inject.model.engine not in engines:
            missing(("agents", name, "inject", "model", "engine"), "engine", inject.model.engine, engines)
        if inject is not None and inject.from_pool is not None and inject.from_pool not in pools:
            missing(("agents", name, "inject", "from_pool"), "pool", inject.from_pool, pools)
        if inject is not None and inject.pool_agent is not None and inject.pool_agent not in agents:
            missing(("agents", name, "inject", "pool_agent"), "agent", inject.pool_agent, agents)
    for name, turn in turns.items():
        agent = turn.agent or name
        if agent not in agents:
            loc = ("graph", "turns", name, "agent") if turn.agent else ("graph", "turns", name)
            missing(loc, "agent", agent, agents)
        ref = turn.until.of
        if ref is not None and ref.pool not in pools:
            missing(("graph", "turns", name, "until", "of", "pool"), "pool", ref.pool, pools)
    for name, pool in scenario.pools.items():
        if pool.agent is not None and pool.agent not in agents:
            missing(("pools", name, "agent"), "agent", pool.agent, agents)
    probe = scenario.judge.attribution.probe
    if probe is not None and probe not in agents:
        missing(("judge", "attribution", "probe"), "agent", probe, agents)
    if scenario.graph.start not in turns:
        missing(("graph", "start"), "turn", scenario.graph.start, turns)
    for index, edge in enumerate(scenario.graph.edges):
        for end, name in (("from", edge.source), ("to", edge.target)):
            if name not in turns:
                missing(("graph", "edges", index, end), "turn", name, turns)
    if problems:
        return problems

    graph = build_graph(scenario)
    reachable = nx.descendants(graph, scenario.graph.start) | {scenario.graph.start}
    for name in turns:
        if name not in reachable:
            problems.append(source.problem(
                ("graph", "turns", name), f"turn `{name}` cannot be reached from start `{scenario.graph.start}`",
                at_key=True,
            ))
    if scenario.limits.max_turns is None and scenario.limits.max_tokens is None:
        for cycle in nx.simple_cycles(graph):
            pairs = list(zip(cycle, cycle[1:] + cycle[:1]))
            if not any(graph.edges[a, b]["repeat"] for a, b in pairs):
                closing = max(graph.edges[pair]["index"] for pair in pairs)
                loop = " -> ".join(cycle + cycle[:1])
                problems.append(source.problem(
                    ("graph", "edges", closing),
                    f"the cycle {loop} has no bound; give one of its edges `repeat: N` "
                    "or set limits.max_turns / limits.max_tokens",
                ))
                break
    return problems


def draw(scenario: Scenario) -> str:
    """The topology as indented text: each turn with its agent, trigger and outgoing edges."""
    lines = [f"{scenario.name}: start at {scenario.graph.start}"]
    graph = build_graph(scenario)
    order = list(nx.bfs_tree(graph, scenario.graph.start)) + [
        n for n in graph.nodes if n not in nx.bfs_tree(graph, scenario.graph.start)
    ]
    for name in order:
        turn = scenario.graph.turns[name]
        agent_name = turn.agent or name
        agent = scenario.agents.get(agent_name)
        if agent is not None and agent.role == "injector":
            what = "injects"
        else:
            until = turn.until.model_dump(exclude_none=True, exclude_defaults=True)
            what = "until " + (", ".join(f"{k}={v}" for k, v in until.items()) or "end=answer")
        engine = f" on {agent.engine}" if agent is not None and agent.engine else ""
        lines.append(f"  [{name}] {agent_name}{engine}: {what}")
        for _, target, data in sorted(graph.out_edges(name, data=True), key=lambda e: e[2]["index"]):
            extras = []
            if data["when"] != "always":
                when = data["when"]
                extras.append(f"when {when if isinstance(when, str) else when.model_dump(exclude_none=True)}")
            if data["repeat"]:
                extras.append(f"at most {data['repeat']}x")
            lines.append(f"      └─> {target}" + (f"  ({'; '.join(extras)})" if extras else ""))
    return "\n".join(lines)
