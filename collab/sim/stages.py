"""A run's episodes in phases: the stages that fill pools, then the main episodes on the problems
selected from those pools (subsets), each possibly seeded from them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from collab.data import MathProblem, load_pool, load_problems
from collab.data.pools import Pool, Trajectory, require_agent
from collab.data.subsets import choose
from collab.log.store import EpisodeRecord, RunStore, open_run
from collab.scenario import Loaded, Point, Problem, ScenarioError
from collab.scenario.graph import model_under_test, next_writer, writers
from collab.scenario.schema import (
    GraphConfig,
    PoolConfig,
    Scenario,
    StageConfig,
    TurnConfig,
)
from collab.scenario.seeds import stable_int
from collab.sim.plan import EpisodeSpec, episode_digest, plan

SELECTION = "selection.json"


def resolve(base: Path, name: str) -> Path:
    """``name`` relative to ``base`` unless absolute."""
    path = Path(name)
    return path if path.is_absolute() else base / path


def fills(config: PoolConfig) -> str | None:
    """The stage of this run that fills a pool, if one does."""
    return config.stage if config.run is None else None


def load_pools(scenario: Scenario, base: Path) -> dict[str, Pool]:
    """The pools read from trajectory files and earlier runs (stage pools fill as their stage ends)."""
    pools: dict[str, Pool] = {}
    for name, config in scenario.pools.items():
        if config.files is not None:
            files = [(resolve(base, f), config.agent) if isinstance(f, str) else (resolve(base, f.file), f.agent)
                     for f in config.files]
            pools[name] = load_pool(name, files)
        elif config.run is not None:
            records = open_run(resolve(base, config.run)).episodes().values()
            pools[name] = Pool(name, episode_trajectories(records, config.stage))
    return pools


def solo_scenario(scenario: Scenario, agent: str, stage: StageConfig) -> Scenario:
    """``agent`` alone from the bare prompt until its answer, under the stage's limits."""
    graph = GraphConfig(start=agent, turns={agent: TurnConfig()}, edges=[])
    return scenario.model_copy(update={"graph": graph, "limits": stage.limits or scenario.limits, "sweep": {}})


def stage_specs(loaded: Loaded, name: str, problems: list[MathProblem]) -> list[EpisodeSpec]:
    """A stage's solo episodes: every agent, ``samples`` times per problem, on the first sweep point's engines."""
    point = loaded.points[0]
    stage = point.scenario.stages[name]
    digest = episode_digest(loaded)
    solos = {agent: solo_scenario(point.scenario, agent, stage) for agent in stage.agents or writers(point.scenario)}
    specs = []
    for problem in problems:
        for agent, solo in solos.items():
            for sample in range(stage.samples):
                ident = hashlib.sha256(f"{digest}/stage/{name}/{agent}/{problem.id}/{sample}".encode()).hexdigest()[:16]
                specs.append(EpisodeSpec(ident, problem, sample, point, stable_int(loaded.scenario.seed, ident),
                                         stage=name, solo=solo))
    return specs


class Schedule:
    """The episodes of a run, phase by phase, skipping those ``include`` rejects (done, other shards)."""

    def __init__(self, loaded: Loaded, base: Path, include: Callable[[str], bool] = lambda _: True,
                 sharded: bool = False) -> None:
        scenario = loaded.scenario
        self.loaded = loaded
        self.include = include
        self.pools = load_pools(scenario, base)
        self.problems = load_problems(scenario.dataset, base, self.pools)
        self.stages = list(dict.fromkeys(s for c in scenario.pools.values() if (s := fills(c)) is not None))
        if self.stages and sharded:
            raise ScenarioError([Problem("--shard", 1, 1, "stages", "stages cannot be split into shards: run them "
                                         "once, then load their pool with `{run: RUN, stage: NAME}`")])
        self.stage_specs = [spec for name in self.stages for spec in stage_specs(loaded, name, self.problems)]
        self.selection: list[dict[str, Any]] = []
        """Per sweep point: the model under test and the problem ids of every subset (``selection.json``)."""
        self._chosen: dict[tuple, list[str]] = {}
        self._main: list[EpisodeSpec] | None = None if self.stages else self._plan_main()

    @property
    def planned(self) -> int:
        """Episodes known so far: the stages' alone while the main episodes wait on their pools."""
        specs = self.stage_specs + (self._main or [])
        return sum(1 for spec in specs if self.include(spec.id))

    def phases(self, store: RunStore, *, record: bool = True) -> Iterator[list[EpisodeSpec]]:
        """The stage episodes, then (their pools filled from ``store``) the main episodes; ``record``:
        write the main episodes' problem selection into ``store`` (only its writer does)."""
        if self.stage_specs:
            yield [spec for spec in self.stage_specs if self.include(spec.id)]
            records = list(store.episodes().values())
            for name, config in self.loaded.scenario.pools.items():
                if (stage := fills(config)) is not None:
                    self.pools[name] = Pool(name, episode_trajectories(records, stage))
        main = self._main if self._main is not None else self._plan_main()
        if self.selection and record:
            store.write_json(SELECTION, self.selection)
        yield [spec for spec in main if self.include(spec.id)]

    def _plan_main(self) -> list[EpisodeSpec]:
        scenario = self.loaded.scenario
        if not scenario.subsets and not any(t.seed for t in scenario.graph.turns.values()):
            return plan(self.loaded, self.problems)
        return plan(self.loaded, self.problems, chosen=[self._choose(point) for point in self.loaded.points])

    def _choose(self, point: Point) -> dict[str, tuple[str, ...]]:
        """The problems a sweep point runs on, each with the subsets holding it: those whose seeds can
        all be drawn, then (when there are subsets) those some subset selects."""
        scenario = point.scenario
        seeds = self._seeds(scenario)
        candidates = [p.id for p in self.problems
                      if all(pool.for_problem(p.id, author, correct=correct) for pool, author, correct in seeds)]
        if not scenario.subsets:
            return dict.fromkeys(candidates, ())
        model = model_under_test(scenario)
        members: dict[str, list[str]] = {}
        for name, config in scenario.subsets.items():
            agents = config.agents or [model or ""]
            key = (name, config.model_dump_json(), tuple(agents), tuple(candidates))
            if key not in self._chosen:
                self._chosen[key] = choose(name, config, self.pools[config.pool], candidates, agents, scenario.seed)
            members[name] = self._chosen[key]
        self.selection.append({"point": point.values, "model": model, "subsets": members})
        held = {name: set(ids) for name, ids in members.items()}
        chosen = {pid: tuple(name for name in members if pid in held[name]) for pid in candidates}
        return {pid: names for pid, names in chosen.items() if names}

    def _seeds(self, scenario: Scenario) -> list[tuple[Pool, str, bool | None]]:
        """What each seed turn draws: its pool, the author and the correctness it asks for."""
        seeds = []
        for name, turn in scenario.graph.turns.items():
            if turn.seed is not None:
                author = turn.seed.agent or next_writer(scenario, name) or ""
                require_agent(self.pools[turn.seed.pool], author)
                seeds.append((self.pools[turn.seed.pool], author, turn.seed.correct))
        return seeds


def episode_trajectories(records: Iterable[EpisodeRecord], stage: str | None) -> list[Trajectory]:
    """Finished episodes of ``stage`` (None: the main episodes) as trajectories, credited to their last writer."""
    trajectories = []
    for record in records:
        if record.start.stage != stage or record.end is None or record.end.status != "ok":
            continue
        writer = record.last_writer
        if writer is None:
            continue
        trajectories.append(Trajectory(
            problem_id=record.start.problem_id, agent=writer, text="".join(s.text for s in record.spans),
            correct=record.end.correct, answer=record.start.gold, problem=record.start.problem,
            source=record.start.source,
        ))
    return trajectories
