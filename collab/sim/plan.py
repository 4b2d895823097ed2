"""Which episodes a run consists of: stable ids, seeds, and a cache-friendly order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from collab.data.problems import MathProblem
from collab.scenario import Loaded, Point, Scenario
from collab.scenario.seeds import stable_int

SPEED_SETTINGS = ("cache", "cache_budget_mb", "stream", "timeout_s", "retries", "backoff_s", "max_connections",
                  "health_timeout_s", "latency_s", "threads")
"""Engine options that change how fast episodes run, not what they are."""


def episode_digest(loaded: Loaded) -> str:
    """What episodes mean: the resolved scenario minus sizes (limit, samples) and speed settings."""
    data = loaded.scenario.model_dump(mode="json", exclude={"concurrency", "samples"})
    data["dataset"].pop("limit", None)
    for engine in data["engines"].values():
        for key in SPEED_SETTINGS:
            engine.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: problem, sample, sweep point, seed and stage."""

    id: str
    problem: MathProblem
    sample: int
    point: Point
    seed: int
    stage: str | None = None
    """The stage a solo episode belongs to (None: a main episode)."""
    subsets: tuple[str, ...] = ()
    """The subsets (``subsets:``) whose selection for this point holds the problem."""
    solo: Scenario | None = None
    """A stage episode's own scenario: the agent alone until its answer (engines are the point's)."""

    @property
    def scenario(self) -> Scenario:
        """The scenario the episode runs (its stage's solo scenario for stage episodes)."""
        return self.solo or self.point.scenario


def plan(loaded: Loaded, problems: list[MathProblem], samples: int | None = None,
         chosen: list[dict[str, tuple[str, ...]]] | None = None) -> list[EpisodeSpec]:
    """Episodes grouped by problem, so the samples and sweep points of a problem share their prompt.

    ``chosen[i]``, when given, maps the ids of the problems sweep point ``i`` runs on to the subsets
    holding them (default: every problem, in no subset).
    """
    digest = episode_digest(loaded)
    count = samples or loaded.scenario.samples
    specs: list[EpisodeSpec] = []
    for problem in problems:
        for index, point in enumerate(loaded.points):
            if chosen is not None and problem.id not in chosen[index]:
                continue
            subsets = chosen[index][problem.id] if chosen is not None else ()
            point_key = json.dumps(point.values, sort_keys=True, default=str)
            for sample in range(count):
                ident = hashlib.sha256(f"{digest}/{problem.id}/{sample}/{point_key}".encode()).hexdigest()[:16]
                seed = stable_int(loaded.scenario.seed, ident)
                specs.append(EpisodeSpec(ident, problem, sample, point, seed, subsets=subsets))
    return specs
