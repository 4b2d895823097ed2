"""The episode scheduler: plan a run, drive episodes under bounded concurrency, log, resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collab import __version__
from collab.data.files import read_text
from collab.engines import Engine, build_engine
from collab.engines.base import EngineStartError
from collab.events import Event, PhaseStart, RunEnd, RunStart
from collab.judge import AnswerChecker, Probe, judge_episode
from collab.log.secrets import Scrubber
from collab.log.store import MANIFEST, SCENARIO, SUMMARY, RunStore, StoreError, is_run
from collab.report.summary import summarize
from collab.scenario import Loaded, load
from collab.scenario.graph import engines_in_use
from collab.scenario.judging import AttributionSettings
from collab.scenario.loader import load_source
from collab.scenario.schema import Scenario
from collab.sim.episode import Episode
from collab.sim.forking import episode_forks
from collab.sim.plan import EpisodeSpec, episode_digest
from collab.sim.requests import EpisodeFailed, RequestWatcher
from collab.sim.stages import Schedule

Observer = Callable[[Event], None]
NO_ATTRIBUTION = AttributionSettings(method="none")
"""Solo stage episodes are only graded: they fill pools, nobody derails them."""


@dataclass
class RunOptions:
    """How to run a scenario; everything that changes what episodes are goes through ``overrides``."""

    overrides: list[str] = field(default_factory=list)
    out: Path = Path("runs")
    limit: int | None = None
    samples: int | None = None
    concurrency: int | None = None
    model: str | None = None
    dry_run: bool = False
    resume: Path | None = None
    retry_failed: bool = False
    watch: RequestWatcher | None = None
    """Told when each request leaves for an engine and when it is back (for progress displays)."""
    waiting: Counter[str] = field(default_factory=Counter)
    """Requests waiting for a server to come back per engine (every server down), kept current."""
    shard: tuple[int, int] | None = None
    """``(i, n)``: run only the episodes whose id falls in slice i of n (0 <= i < n)."""
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    run_dir: Path | None = None
    """Set by :func:`simulate` once the run folder exists (for an interrupted run's resume hint)."""


def shortcut_overrides(path: Path, options: RunOptions) -> list[str]:
    """``--limit``, ``--samples``, ``--model`` and ``--dry-run`` as ``--set`` overrides."""
    extra: list[str] = []
    if options.limit is not None:
        extra.append(f"dataset.limit={options.limit}")
    if options.samples is not None:
        extra.append(f"samples={options.samples}")
    engines = (load_source(path).data or {}).get("engines") or {}
    for name, config in engines.items():
        if options.dry_run:
            extra.append(f"engines.{name}={{kind: scripted}}")
        elif options.model and isinstance(config, dict) and config.get("kind") == "local":
            extra.append(f"engines.{name}.model={json.dumps(options.model)}")
    return list(options.overrides) + extra


def build_engines(loaded: Loaded) -> tuple[list[dict[str, Engine]], dict[str, Engine]]:
    """One engine per distinct configuration; per sweep point, the engines by name."""
    built: dict[str, Engine] = {}
    per_point: list[dict[str, Engine]] = []
    for point in loaded.points:
        engines: dict[str, Engine] = {}
        used = engines_in_use(point.scenario)
        for name, config in point.scenario.engines.items():
            if name not in used:
                continue
            key = f"{name}:{config.model_dump_json()}"
            if key not in built:
                try:
                    built[key] = build_engine(name, config)
                except Exception as error:  # e.g. a tokenizer that cannot be found
                    raise EngineStartError(f"engine {name} could not be built: {error}") from error
            engines[name] = built[key]
        per_point.append(engines)
    return per_point, built


def read_inject_files(scenario: Scenario, base: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for agent in scenario.agents.values():
        if agent.inject is not None and agent.inject.file is not None:
            files[agent.inject.file] = read_text(_resolve(base, agent.inject.file))
    return files


async def open_engine(stack: contextlib.AsyncExitStack, engine: Engine, scrubber: Scrubber | None = None) -> dict[str, Any]:
    """Open ``engine`` for as long as ``stack`` lasts; returns its description for the manifest (an
    :class:`EngineStartError`, secrets blanked, if it cannot start)."""
    try:
        await stack.enter_async_context(engine)
        return engine.info
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as error:
        hint = " (offline? point local engines at a model file or folder with --model PATH)" if (
            "huggingface.co" in str(error)) else ""
        message = f"engine {engine.name} could not start: {error}{hint}"
        raise EngineStartError((scrubber or Scrubber()).text(message)) from None


def writer_probes(scenario: Scenario, engines: dict[str, Engine]) -> dict[str, Probe]:
    """The scenario's writers as judge probes (the rollouts method continues traces with them)."""
    return {
        name: Probe(engines[agent.engine], agent=name, temperature=agent.temperature, top_p=agent.top_p,
                    top_k=agent.top_k, seed=agent.seed)
        for name, agent in scenario.agents.items() if agent.role == "writer" and agent.engine in engines
    }


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ValueError(f"--shard takes i/n with 0 <= i < n, got {text!r}")
    return int(index), int(count)


def in_shard(episode_id: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or int(episode_id, 16) % shard[1] == shard[0]


def _resolve(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


class Runner:
    """Runs the episodes of one scenario into one run folder."""

    def __init__(self, loaded: Loaded, store: RunStore, base: Path, options: RunOptions,
                 observers: list[Observer] | None = None) -> None:
        self.loaded = loaded
        self.store = store
        self.base = base
        self.options = options
        self.observers = observers or []
        self.scenario = loaded.scenario
        self.concurrency = options.concurrency or self.scenario.concurrency

    def emit(self, event: Event) -> None:
        event = self.store.scrubber.event(event)  # type: ignore[arg-type]
        self.store.emit(event)
        for observer in self.observers:
            observer(event)

    async def run(self, schedule: Schedule, resumed: bool) -> dict[str, Any]:
        per_point, engines = build_engines(self.loaded)
        for engine in engines.values():  # engines that wait out outages count their waiting requests here
            if isinstance(getattr(engine, "waiting", None), Counter):
                engine.waiting = self.options.waiting  # type: ignore[attr-defined]
        pools = schedule.pools
        files = read_inject_files(self.scenario, self.base)
        point_index = {id(p): i for i, p in enumerate(self.loaded.points)}
        status = "interrupted"
        counters: dict[str, dict[str, Any]] = {}
        """What the engines counted, taken just before they close."""
        self.emit(RunStart(run_id=self.store.path.name, scenario=self.scenario.name,
                           digest=episode_digest(self.loaded), episodes=schedule.planned, resumed=resumed))
        try:
            async with contextlib.AsyncExitStack() as stack:
                manifest = self.store.read_json(MANIFEST) or {}
                manifest["engines"] = {e.name: await open_engine(stack, e, self.store.scrubber) for e in engines.values()}
                self.store.write_json(MANIFEST, manifest)
                stack.callback(lambda: counters.update({e.name: e.counters() for e in engines.values()}))
                settings = self.scenario.judge
                checker = await stack.enter_async_context(
                    AnswerChecker(workers=settings.workers, timeout_s=settings.timeout_s))
                replicas = max((engine.replicas for engine in engines.values()), default=1)
                gate = asyncio.Semaphore(self.concurrency * replicas)  # the limit is per server

                async def guarded(spec: EpisodeSpec) -> None:
                    engines_here = per_point[point_index[id(spec.point)]]
                    episode = Episode(spec, engines_here, pools, files, self.emit, self.options.watch)
                    await self._episode(episode, checker, gate)

                for index, specs in enumerate(schedule.phases(self.store)):  # stages first: later phases read their pools
                    if index:
                        self.emit(PhaseStart(episodes=len(specs)))
                    async with asyncio.TaskGroup() as group:
                        for spec in specs:
                            await gate.acquire()
                            group.create_task(guarded(spec))
                status = "ok"
        finally:
            summary = self._finish(status, counters)
        return summary

    def _finish(self, status: str, engines: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Close the log with ``run.end`` and write the summary (best effort when the disk failed)."""
        try:
            self.emit(RunEnd(run_id=self.store.path.name, status=status))
        except StoreError:
            pass
        self.store.close()
        summary = summarize(self.store.episodes())
        summary["engines"] = {name: stats for name, stats in engines.items() if stats}
        try:
            self.store.write_json(SUMMARY, summary)
        except StoreError:
            pass
        return summary

    async def _episode(self, episode: Episode, checker: AnswerChecker, gate: asyncio.Semaphore) -> None:
        """Generate under the concurrency gate, then grade outside it (grading is not engine load)."""
        started = time.perf_counter()
        try:
            self.emit(episode.start_event())
            reason = await episode.run()
        except EpisodeFailed as error:
            self.emit(episode.end_event("failed", "error", started, error=str(error)))
            return
        except (asyncio.CancelledError, KeyboardInterrupt, StoreError):
            raise
        except Exception as error:  # a bug must not take the other episodes down with it
            self.emit(episode.end_event("failed", "error", started, error=f"{type(error).__name__}: {error}"))
            return
        finally:
            gate.release()
        end = episode.end_event("ok", reason, started)
        try:
            judgement = await judge_episode(
                episode.spec.id, episode.trace, episode.spec.problem.answer,
                attribution=self.scenario.judge.attribution if episode.spec.stage is None else NO_ATTRIBUTION,
                checker=checker, probes=writer_probes(episode.scenario, episode.engines), seed=episode.spec.seed,
                thinking=episode.thinking,
            )
        except (asyncio.CancelledError, KeyboardInterrupt, StoreError):
            raise
        except Exception as error:  # the judge failing is this episode's failure, never the run's
            self.emit(episode.end_event("failed", "error", started, error=f"judge: {type(error).__name__}: {error}"))
            return
        for event in judgement.events:  # before episode.end, so a kill cannot leave a finished episode unjudged
            self.emit(event)
        if self.scenario.judge.forks is not None and episode.spec.stage is None:
            probes = writer_probes(episode.scenario, episode.engines)
            for fork in await episode_forks(episode, self.scenario.judge.forks, probes, checker):
                self.emit(fork)
        grade = judgement.grade
        end.answer, end.correct = grade.answer, grade.correct
        end.judge_reason = grade.reason if grade.status != "ok" else None
        self.emit(end)


@dataclass
class RunResult:
    path: Path
    summary: dict[str, Any]


def prepare(path: Path, options: RunOptions) -> tuple[Loaded, Path]:
    """The loaded scenario (with overrides) and the folder its relative paths start from."""
    if options.resume is not None:
        manifest = resumable(options.resume)
        return load(options.resume / SCENARIO), Path(manifest["base_dir"])
    return load(path, shortcut_overrides(path, options)), path.resolve().parent


def resumable(folder: Path) -> dict[str, Any]:
    """The manifest of a run folder that can be resumed, or a :class:`StoreError` saying why not."""
    if not folder.is_dir():
        raise StoreError(f"{folder}: no such run folder")
    if not is_run(folder):
        raise StoreError(f"{folder} is not a run folder (no {MANIFEST})")
    manifest = RunStore(folder).read_json(MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("base_dir"), str):
        raise StoreError(f"{folder / MANIFEST} is corrupt (no base_dir)")
    return manifest


def secret_names(loaded: Loaded) -> set[str]:
    """The environment variables that hold the scenario's API keys."""
    return {name for point in loaded.points for engine in point.scenario.engines.values()
            if (name := getattr(engine, "api_key_env", None))}


async def simulate(path: Path | None, options: RunOptions, observers: list[Observer] | None = None) -> RunResult:
    """Run (or resume) a scenario; returns the run folder and its summary.

    The run folder is locked for the whole run. A new run that ends (by an error or an interrupt)
    before any episode finished leaves no folder behind.
    """
    if options.resume is not None:
        loaded, base = prepare(options.resume, options)
        store = RunStore(options.resume, Scrubber.from_env(secret_names(loaded)))
        store.lock()
        shard = (store.read_json(MANIFEST) or {}).get("shard")
        options.shard = tuple(shard) if shard else None
        keep = set(store.finished(include_failed=not options.retry_failed))
        store.compact(keep)
    else:
        assert path is not None
        loaded, base = prepare(path, options)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        name = loaded.scenario.name + (f"-shard{options.shard[0]}of{options.shard[1]}" if options.shard else "")
        store = RunStore.create(options.out, name, run_id, Scrubber.from_env(secret_names(loaded)))
        keep = set()
    options.run_dir = store.path
    try:
        if options.resume is None:
            _write_new_run(store, loaded, path, base, options)
        schedule = Schedule(loaded, base, lambda i: i not in keep and in_shard(i, options.shard),
                            sharded=options.shard is not None)
        runner = Runner(loaded, store, base, options, observers)
        summary = await runner.run(schedule, resumed=options.resume is not None)
    except BaseException:
        if options.resume is None and not store.finished():
            store.unlock()
            shutil.rmtree(store.path, ignore_errors=True)
            options.run_dir = None
        raise
    finally:
        store.unlock()
    return RunResult(store.path, summary)


def _write_new_run(store: RunStore, loaded: Loaded, path: Path | None, base: Path, options: RunOptions) -> None:
    store.write_text(SCENARIO, yaml.safe_dump(loaded.source.data, sort_keys=False, allow_unicode=True))
    store.write_json(MANIFEST, {
        "collab": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "argv": options.argv, "scenario": str(path), "base_dir": str(base), "seed": loaded.scenario.seed,
        "digest": episode_digest(loaded), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "shard": list(options.shard) if options.shard else None,
    })
