"""The turn graph drawn as indented text (``collab graph``)."""

from __future__ import annotations

import networkx as nx

from collab.scenario.graph import build_graph, next_writer
from collab.scenario.schema import Scenario


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
        if turn.seed is not None:
            seed = turn.seed
            author = seed.agent or next_writer(scenario, name) or "?"
            agent_name, agent = author, None
            what = f"seeds {seed.fraction:g} of {author}'s trajectory from pool {seed.pool}"
        elif agent is not None and agent.role == "injector":
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
