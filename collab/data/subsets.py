"""Problem subsets chosen by solve rates in a pool: shared, individual (inverse solve rate), guidability, control."""

from __future__ import annotations

import random
from statistics import mean

from collab.data.pools import Pool, require_agent
from collab.scenario.schema import SubsetConfig
from collab.scenario.seeds import stable_int


def weighted_sample(items: list[str], weights: list[float], k: int, rng: random.Random) -> list[str]:
    """``k`` items without replacement, each draw proportional to the weights of the items left.

    Efraimidis–Spirakis: the ``k`` largest keys ``u ** (1 / w)`` (``u`` uniform) are such a draw;
    returned in the order they would have been drawn.
    """
    keys = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights)), reverse=True)
    return [items[i] for _, i in keys[:k]]


def choose(name: str, config: SubsetConfig, pool: Pool, candidates: list[str], agents: list[str],
           seed: int) -> list[str]:
    """The ids (in ``candidates`` order) of the problems of subset ``name`` for ``agents``.

    Eligible: every agent's solve rate lies in ``[min_rate, max_rate]`` (a problem an agent has no
    graded trajectory of is not eligible); with ``inverse_rate`` also a mean rate above 0. Then
    ``size`` of them are drawn, seeded by ``seed``, the subset's name and the agents.
    """
    for agent in agents:
        require_agent(pool, agent)
    rates: dict[str, float] = {}
    for problem_id in candidates:
        found = [pool.solve_rate(problem_id, agent) for agent in agents]
        if all(r is not None and config.min_rate <= r <= config.max_rate for r in found):
            rates[problem_id] = mean(r for r in found if r is not None)
    if config.sample == "inverse_rate":
        rates = {k: r for k, r in rates.items() if r > 0}
    eligible = list(rates)
    if config.size is None or config.size >= len(eligible):
        return eligible
    rng = random.Random(stable_int(config.seed if config.seed is not None else seed, name, *agents))
    if config.sample == "uniform":
        drawn = set(rng.sample(eligible, config.size))
    else:
        drawn = set(weighted_sample(eligible, [1.0 / rates[k] for k in eligible], config.size, rng))
    return [k for k in eligible if k in drawn]
