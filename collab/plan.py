"""Which episodes a run consists of: stable ids, seeds, and a cache-friendly order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from collab.data.problems import MathProblem
from collab.scenario import Loaded, Point


def stable_int(*parts: Any) -> int:
    """A 31-bit integer from ``parts``: the same on every machine and Python version."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def episode_digest(loaded: Loaded) -> str:
    """What episodes mean: the resolved scenario minus sizes (limit, samples) and speed settings."""
    data = loaded.scenario.model_dump(mode="json", exclude={"concurrency", "samples"})
    data["dataset"].pop("limit", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EpisodeSpec:
    id: str
    problem: MathProblem
    sample: int
    point: Point
    seed: int


def plan(loaded: Loaded, problems: list[MathProblem], samples: int | None = None) -> list[EpisodeSpec]:
    """Episodes grouped by problem, so the samples and sweep points of a problem share their prompt."""
    digest = episode_digest(loaded)
    count = samples or loaded.scenario.samples
    specs: list[EpisodeSpec] = []
    for problem in problems:
        for point in loaded.points:
            point_key = json.dumps(point.values, sort_keys=True, default=str)
            for sample in range(count):
                ident = hashlib.sha256(f"{digest}/{problem.id}/{sample}/{point_key}".encode()).hexdigest()[:16]
                seed = stable_int(loaded.scenario.seed, ident)
                specs.append(EpisodeSpec(ident, problem, sample, point, seed))
    return specs
