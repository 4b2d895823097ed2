"""The checks of a scenario that span sections: references between them and the shape of the graph."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

import networkx as nx

from collab.scenario.errors import Problem
from collab.scenario.graph import build_graph, model_under_test, next_writer, writers
from collab.scenario.loader import Source
from collab.scenario.schema import Scenario


def check(scenario: Scenario, source: Source) -> list[Problem]:
    """References between sections and the shape of the graph."""
    return _check_references(scenario, source) or _check_shape(scenario, source)


Reference = tuple[tuple, str, str, Collection[str]]
"""Where a section names something, what kind of thing, the name, and the names defined."""


def _check_references(scenario: Scenario, source: Source) -> list[Problem]:
    """Every name a section uses is defined."""
    return (_unknown(source, [*_agent_references(scenario), *_turn_references(scenario)])
            + _check_pools(scenario, source) + _unknown(source, _graph_references(scenario)))


def _unknown(source: Source, references: Iterable[Reference]) -> list[Problem]:
    """A problem for each reference to a name that is not defined."""
    return [source.problem(loc, f"unknown {kind} `{name}`; expected one of: {_names(known, 'none defined')}")
            for loc, kind, name, known in references if name not in known]


def _names(known: Iterable[str], none: str) -> str:
    return ", ".join(sorted(known)) or none


def _agent_references(scenario: Scenario) -> Iterator[Reference]:
    """The engines, pools and agents the agents name."""
    engines, agents, pools = scenario.engines, scenario.agents, set(scenario.pools)
    for name, agent in agents.items():
        if agent.engine is not None:
            yield ("agents", name, "engine"), "engine", agent.engine, engines
        inject = agent.inject
        if inject is not None and inject.model is not None:
            yield ("agents", name, "inject", "model", "engine"), "engine", inject.model.engine, engines
        if inject is not None and inject.from_pool is not None:
            yield ("agents", name, "inject", "from_pool"), "pool", inject.from_pool, pools
        if inject is not None and inject.pool_agent is not None:
            yield ("agents", name, "inject", "pool_agent"), "agent", inject.pool_agent, agents


def _turn_references(scenario: Scenario) -> Iterator[Reference]:
    """The agents and pools the turns name."""
    agents, pools = scenario.agents, set(scenario.pools)
    for name, turn in scenario.graph.turns.items():
        if turn.seed is not None:
            yield ("graph", "turns", name, "seed", "pool"), "pool", turn.seed.pool, pools
            continue
        loc = ("graph", "turns", name, "agent") if turn.agent else ("graph", "turns", name)
        yield loc, "agent", turn.agent or name, agents
        if turn.until.of is not None:
            yield ("graph", "turns", name, "until", "of", "pool"), "pool", turn.until.of.pool, pools


def _graph_references(scenario: Scenario) -> Iterator[Reference]:
    """The judge's probe, the start turn and the turns the edges join."""
    turns = scenario.graph.turns
    probe = scenario.judge.attribution.probe
    if probe is not None:
        yield ("judge", "attribution", "probe"), "agent", probe, scenario.agents
    yield ("graph", "start"), "turn", scenario.graph.start, turns
    for index, edge in enumerate(scenario.graph.edges):
        for end, name in (("from", edge.source), ("to", edge.target)):
            yield ("graph", "edges", index, end), "turn", name, turns


def _check_shape(scenario: Scenario, source: Source) -> list[Problem]:
    """Every turn is reachable, seeds and subsets find their writer, and every cycle is bounded."""
    problems: list[Problem] = []
    turns = scenario.graph.turns
    graph = build_graph(scenario)
    reachable = nx.descendants(graph, scenario.graph.start) | {scenario.graph.start}
    problems += [
        source.problem(("graph", "turns", name),
                       f"turn `{name}` cannot be reached from start `{scenario.graph.start}`", at_key=True)
        for name in turns if name not in reachable
    ]
    problems += _check_writers_follow(scenario, source)
    if scenario.limits.max_turns is None and scenario.limits.max_tokens is None:
        for cycle in nx.simple_cycles(graph):
            pairs = list(zip(cycle, cycle[1:] + cycle[:1], strict=False))
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


Mismatch = tuple[tuple, str, Iterable[str]]
"""Where a section names something that does not fit, what is wrong, and what would fit."""


def _check_pools(scenario: Scenario, source: Source) -> list[Problem]:
    """Stages, pools, subsets and a pool-backed dataset refer to things that exist and fit."""
    pools = scenario.pools
    mismatches = [*_stage_mismatches(scenario), *_credit_mismatches(scenario)]
    dataset = scenario.dataset.pool
    if dataset is not None and dataset not in pools:
        mismatches.append((("dataset", "pool"), f"unknown pool `{dataset}`", pools))
    problems = [source.problem(loc, f"{message}; expected one of: {_names(names, 'none')}")
                for loc, message, names in mismatches]
    if dataset is not None and dataset in pools and pools[dataset].run is None and pools[dataset].stage is not None:
        problems.append(source.problem(("dataset", "pool"), f"pool `{dataset}` is filled by a stage, which needs "
                                       "the dataset first; use a pool loaded from files or an earlier run"))
    return problems


def _stage_mismatches(scenario: Scenario) -> Iterator[Mismatch]:
    """Stage agents that are not writers; pools filled by stages that do not exist."""
    stages, solo = scenario.stages, writers(scenario)
    for name, stage in stages.items():
        for index, agent in enumerate(stage.agents or []):
            if agent not in solo:
                yield ("stages", name, "agents", index), f"`{agent}` is not a writer", solo
    for name, pool in scenario.pools.items():
        if pool.stage is not None and pool.run is None and pool.stage not in stages:
            yield ("pools", name, "stage"), f"unknown stage `{pool.stage}`", stages


def _credit_mismatches(scenario: Scenario) -> Iterator[Mismatch]:
    """Subsets of unknown pools, and subsets or seeds asking for an agent a stage pool holds nothing by."""
    pools = scenario.pools
    for name, subset in scenario.subsets.items():
        if subset.pool not in pools:
            yield ("subsets", name, "pool"), f"unknown pool `{subset.pool}`", pools
            continue
        credited = _stage_agents(scenario, subset.pool)
        for index, agent in enumerate(subset.agents or []):
            if credited is not None and agent not in credited:
                yield (("subsets", name, "agents", index), f"pool `{subset.pool}` holds no trajectories by `{agent}`",
                       credited)
    for name, turn in scenario.graph.turns.items():
        seed = turn.seed
        if seed is None or seed.agent is None or seed.pool not in pools:
            continue
        credited = _stage_agents(scenario, seed.pool)
        if credited is not None and seed.agent not in credited:
            yield (("graph", "turns", name, "seed", "agent"), f"pool `{seed.pool}` holds no trajectories by "
                   f"`{seed.agent}`", credited)


def _stage_agents(scenario: Scenario, pool: str) -> set[str] | None:
    """Who a pool filled by a stage of this scenario holds trajectories by (None: known only at run time)."""
    config = scenario.pools[pool]
    if config.stage is None or config.run is not None or config.stage not in scenario.stages:
        return None
    return set(scenario.stages[config.stage].agents or writers(scenario))


def _check_writers_follow(scenario: Scenario, source: Source) -> list[Problem]:
    """Seeds without ``agent`` and subsets without ``agents`` need a writer to default to."""
    problems: list[Problem] = []
    for name, turn in scenario.graph.turns.items():
        if turn.seed is not None and turn.seed.agent is None and next_writer(scenario, name) is None:
            problems.append(source.problem(("graph", "turns", name, "seed"),
                                           "no writer follows this seed turn; name its author in `agent:`"))
    if model_under_test(scenario) is None:
        for name, subset in scenario.subsets.items():
            if subset.agents is None:
                problems.append(source.problem(("subsets", name),
                                               "the graph has no writer whose solve rates to use; list `agents:`"))
    return problems
