"""Problem subsets from solve rates: bounds, shared vs individual, seeded draws, inverse-rate weights."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from collab.data.errors import DataError
from collab.data.pools import Pool, Trajectory
from collab.data.subsets import choose, weighted_sample
from collab.scenario.schema import SubsetConfig


def pool_with(rates: dict[str, dict[str, float]], samples: int = 8) -> Pool:
    """``rates[agent][problem]``: that share of ``samples`` trajectories is correct."""
    trajectories = [
        Trajectory(problem, agent, "...", correct=i < round(rate * samples))
        for agent, by_problem in rates.items() for problem, rate in by_problem.items() for i in range(samples)
    ]
    return Pool("solo", trajectories)


RATES = {
    "a": {"p1": 1.0, "p2": 1.0, "p3": 0.5, "p4": 0.125, "p5": 0.0},
    "b": {"p1": 1.0, "p2": 0.875, "p3": 1.0, "p4": 0.0},
}
IDS = ["p1", "p2", "p3", "p4", "p5", "p6"]


def subset(**fields) -> SubsetConfig:
    return SubsetConfig(pool="solo", **fields)


def test_bounds_per_agent_and_shared_across_agents() -> None:
    pool = pool_with(RATES)
    assert choose("s", subset(min_rate=1.0), pool, IDS, ["a"], 0) == ["p1", "p2"]
    assert choose("s", subset(min_rate=1.0), pool, IDS, ["a", "b"], 0) == ["p1"]
    assert choose("g", subset(max_rate=0.125), pool, IDS, ["a"], 0) == ["p4", "p5"]
    assert choose("g", subset(max_rate=0.125), pool, IDS, ["a", "b"], 0) == ["p4"]  # b has no p5: not eligible
    assert choose("i", subset(sample="inverse_rate"), pool, IDS, ["a"], 0) == ["p1", "p2", "p3", "p4"]


def test_unknown_agent_is_an_error() -> None:
    with pytest.raises(DataError, match="no trajectories by `c`"):
        choose("s", subset(), pool_with(RATES), IDS, ["c"], 0)


def test_draws_are_deterministic_for_a_seed() -> None:
    many = pool_with({"a": {f"q{i}": (i % 8 + 1) / 8 for i in range(200)}})
    ids = [f"q{i}" for i in range(200)]
    for sample in ("uniform", "inverse_rate"):
        config = subset(size=20, sample=sample)
        first = choose("individual", config, many, ids, ["a"], 7)
        assert len(first) == 20 and first == choose("individual", config, many, ids, ["a"], 7)
        assert first == [i for i in ids if i in first]  # in dataset order
        assert first != choose("individual", config, many, ids, ["a"], 8)
        assert first != choose("other-name", config, many, ids, ["a"], 7)


def test_inverse_rate_draw_matches_its_definition() -> None:
    """One draw picks a problem with probability (1/rate) / sum(1/rate); two draws without
    replacement include problem i with probability p_i + sum_j p_j * p_i / (1 - p_j)."""
    rates = {"p1": 1.0, "p2": 0.5, "p3": 0.25, "p4": 0.125}
    pool = pool_with({"a": rates})
    weights = {k: 1 / r for k, r in rates.items()}
    p = {k: w / sum(weights.values()) for k, w in weights.items()}
    trials = 3000
    once = Counter(x for seed in range(trials) for x in choose("i", subset(size=1, sample="inverse_rate"), pool,
                                                                list(rates), ["a"], seed))
    twice = Counter(x for seed in range(trials) for x in choose("i", subset(size=2, sample="inverse_rate"), pool,
                                                                 list(rates), ["a"], seed))
    for k in rates:
        included = p[k] + sum(p[j] * p[k] / (1 - p[j]) for j in rates if j != k)
        assert abs(once[k] / trials - p[k]) < 0.03, (k, once[k] / trials, p[k])
        assert abs(twice[k] / trials - included) < 0.03, (k, twice[k] / trials, included)


def test_weighted_sample_draw_order() -> None:
    """The first item of a draw is the first successive pick: frequencies follow the weights."""
    rng = random.Random(0)
    first = Counter(weighted_sample(["x", "y"], [1.0, 3.0], 2, rng)[0] for _ in range(4000))
    assert abs(first["y"] / 4000 - 0.75) < 0.03
