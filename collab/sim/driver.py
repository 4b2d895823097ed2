"""Driving a run's episodes: open the engines, walk episodes under bounded concurrency, grade, log."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from collab.data.pools import Pool
from collab.engines import Engine
from collab.engines.base import EngineStartError, generated_tokens
from collab.events import Event, PhaseStart, RunEnd, RunStart
from collab.judge import AnswerChecker, Probe, judge_episode
from collab.log.secrets import Scrubber
from collab.log.store import MANIFEST, SUMMARY, RunStore, StoreError
from collab.report.summary import summarize
from collab.scenario import Loaded
from collab.scenario.judging import AttributionSettings
from collab.scenario.schema import Scenario
from collab.sim.episode import Episode
from collab.sim.forking import episode_forks
from collab.sim.plan import EpisodeSpec, episode_digest
from collab.sim.requests import EpisodeFailed, EpisodeSkipped, RequestWatcher
from collab.sim.stages import Schedule

Observer = Callable[[Event], None]
NO_ATTRIBUTION = AttributionSettings(method="none")
"""Solo stage episodes are only graded: they fill pools, nobody derails them."""


async def open_engine(stack: contextlib.AsyncExitStack, engine: Engine,
                      scrubber: Scrubber | None = None) -> dict[str, Any]:
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


GAUGES = ("max_batch", "cache_tokens", "cache_bytes", "peak_cache_bytes")
"""Engine statistics that are levels, not counts: a resumed run keeps the larger."""


def add_counters(earlier: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """An engine's statistics over a run and its resumptions: counts add up, nested tables too."""
    total = dict(earlier)
    for key, value in now.items():
        before = total.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            total[key] = add_counters(before, value)
        elif isinstance(value, int | float) and isinstance(before, int | float) and not isinstance(value, bool):
            total[key] = max(before, value) if key in GAUGES else before + value
        else:
            total[key] = value
    return total


def writer_probes(scenario: Scenario, engines: dict[str, Engine]) -> dict[str, Probe]:
    """The scenario's writers as judge probes (the rollouts method continues traces with them)."""
    return {
        name: Probe(engines[agent.engine], agent=name, temperature=agent.temperature, top_p=agent.top_p,
                    top_k=agent.top_k, seed=agent.seed)
        for name, agent in scenario.agents.items() if agent.role == "writer" and agent.engine in engines
    }


class Runner:
    """Runs the episodes of one scenario into one run folder."""

    def __init__(self, loaded: Loaded, store: RunStore, concurrency: int | None = None,
                 watch: RequestWatcher | None = None, observers: list[Observer] | None = None, *,
                 waiting: Counter[str] | None = None, generated: dict[str, Callable[[], int | None]] | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        """``waiting``: requests waiting out a server outage per engine, kept current (for displays);
        ``generated``: filled with each engine's count of generated tokens (for displays); ``notify``: told
        in one line each what the run does before its first episode (loading models)."""
        self.loaded = loaded
        self.generated = generated if generated is not None else {}
        self.notify = notify or (lambda text: None)
        self.resumed = False
        self.waiting = waiting
        self.store = store
        self.watch = watch
        self.observers = observers or []
        self.scenario = loaded.scenario
        self.concurrency = concurrency or self.scenario.concurrency

    def emit(self, event: Event) -> None:
        """Log ``event`` (secrets blanked) and show it to the observers."""
        event = self.store.scrubber.event(event)  # type: ignore[arg-type]
        self.store.emit(event)
        for observer in self.observers:
            observer(event)

    async def run(self, schedule: Schedule, per_point: list[dict[str, Engine]], files: dict[str, str],
                  resumed: bool) -> dict[str, Any]:
        """Open the engines, run the schedule's phases and write the summary; returns the summary.

        ``per_point``: the engines of each sweep point by name; ``files``: the texts of inject files.
        """
        self.resumed = resumed
        engines = {id(engine): engine for point in per_point for engine in point.values()}.values()
        for engine in engines:  # engines that wait out outages count their waiting requests here
            if self.waiting is not None and isinstance(getattr(engine, "waiting", None), Counter):
                engine.waiting = self.waiting  # type: ignore[attr-defined]
        pools = schedule.pools
        status = "interrupted"
        counters: dict[str, dict[str, Any]] = {}
        """What the engines counted, taken just before they close."""
        self.emit(RunStart(run_id=self.store.path.name, scenario=self.scenario.name,
                           digest=episode_digest(self.loaded), episodes=schedule.planned, resumed=resumed))
        self.generated.update({e.name: functools.partial(generated_tokens, e) for e in engines})
        try:
            async with contextlib.AsyncExitStack() as stack:
                manifest = self.store.read_json(MANIFEST) or {}
                manifest["engines"] = await self._open(stack, list(engines))
                self.store.write_json(MANIFEST, manifest)
                stack.callback(lambda: counters.update({e.name: e.counters() for e in engines}))
                settings = self.scenario.judge
                checker = await stack.enter_async_context(
                    AnswerChecker(workers=settings.workers, timeout_s=settings.timeout_s))
                gate = self.gate(list(engines))
                # stages first: later phases read their pools
                for index, specs in enumerate(schedule.phases(self.store)):
                    if index:
                        self.emit(PhaseStart(episodes=len(specs)))
                    await self.walk(specs, per_point, pools, files, checker, gate)
                status = "ok"
        finally:
            summary = self.finish(status, counters)
        return summary

    def gate(self, engines: list[Engine]) -> asyncio.Semaphore:
        """The concurrency gate: the limit is per server."""
        return asyncio.Semaphore(self.concurrency * max((engine.replicas for engine in engines), default=1))

    async def walk(self, specs: list[EpisodeSpec], per_point: list[dict[str, Engine]], pools: dict[str, Pool],
                   files: dict[str, str], checker: AnswerChecker, gate: asyncio.Semaphore) -> None:
        """Run ``specs`` (one phase) under ``gate``, each on the engines of its sweep point."""
        point_index = {id(p): i for i, p in enumerate(self.loaded.points)}

        async def guarded(spec: EpisodeSpec) -> None:
            engines_here = per_point[point_index[id(spec.point)]]
            episode = Episode(spec, engines_here, pools, files, self.emit, self.watch, checker=checker)
            await self._episode(episode, checker, gate)

        async with asyncio.TaskGroup() as group:
            for spec in specs:
                await gate.acquire()
                group.create_task(guarded(spec))

    async def _open(self, stack: contextlib.AsyncExitStack, engines: list[Engine]) -> dict[str, Any]:
        """Open the engines for as long as ``stack`` lasts, saying so in one line before and one after."""
        started = time.perf_counter()
        self.notify(f"starting engine{'s' * (len(engines) != 1)} {', '.join(e.name for e in engines)} "
                    "(loading models; a hub model is downloaded on first use)")
        described = {engine.name: await open_engine(stack, engine, self.store.scrubber) for engine in engines}
        notes = "; ".join(f"{name}: {info['note']}" for name, info in described.items() if info.get("note"))
        self.notify(f"engines ready in {time.perf_counter() - started:.1f} s" + (f" ({notes})" if notes else ""))
        return described

    def finish(self, status: str, engines: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Close the log with ``run.end`` and write the summary (best effort when the disk failed)."""
        with contextlib.suppress(StoreError):
            self.emit(RunEnd(run_id=self.store.path.name, status=status))
        self.store.close()
        earlier = (self.store.read_json(SUMMARY) or {}).get("engines", {}) if self.resumed else {}
        summary = summarize(self.store.episodes())
        summary["engines"] = {name: add_counters(earlier.get(name, {}), stats)
                              for name, stats in engines.items() if stats or earlier.get(name)}
        with contextlib.suppress(StoreError):
            self.store.write_json(SUMMARY, summary)
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
        except EpisodeSkipped as error:
            self.emit(episode.end_event("skipped", "skipped", started, error=str(error)))
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
