"""Re-judge a finished run from its event log, without re-simulating its episodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace as replaced
from pathlib import Path
from typing import Any, Literal

from collab.engines import build_engine
from collab.events import AnyEvent, EpisodeEnd, Event, ForkEvent, JudgeValue, JudgeVerdict
from collab.judge.answers import AnswerChecker, Grade
from collab.judge.episode import Judgement, judge_episode
from collab.judge.forks import SAME
from collab.judge.values import Probe
from collab.log.secrets import Scrubber
from collab.log.store import (
    MANIFEST,
    SCENARIO,
    SUMMARY,
    EpisodeRecord,
    open_run,
)
from collab.report.summary import summarize
from collab.report.verdicts import summarize_verdicts
from collab.scenario import load
from collab.scenario.judging import AttributionSettings, ForkSettings, JudgeSettings
from collab.sim.driver import writer_probes
from collab.sim.forking import record_forks
from collab.trace import Span, Trace

JUDGE_SUMMARY = "judge.json"


def trace_of(record: EpisodeRecord, system: str | None = None) -> Trace:
    """An episode's trace rebuilt from its span events (with the token ids they recorded)."""
    start = record.start
    trace = Trace(start.prompt or start.problem, system)
    for event in sorted(record.spans, key=lambda e: e.index):
        trace.append(Span(event.agent, event.kind, event.text, {k: list(v) for k, v in event.ids.items()},
                          dict(event.meta)))
    return trace


def regraded(events: Iterable[AnyEvent], judged: dict[str, Judgement],
             forked: dict[str, list[ForkEvent]] | None = None) -> Iterator[Event]:
    """The log with old judge events (and with ``forked``, old forks) dropped, episode ends regraded, new judge
    events (and forks) after each end."""
    for event in events:
        if isinstance(event, (JudgeValue, JudgeVerdict)) or (forked is not None and isinstance(event, ForkEvent)):
            continue
        judgement = judged.get(getattr(event, "episode_id", ""))
        if isinstance(event, EpisodeEnd) and judgement is not None:
            grade = judgement.grade
            event.answer, event.correct = grade.answer, grade.correct
            event.judge_reason = grade.reason if grade.status != "ok" else None
            yield event
            yield from judgement.events
            yield from (forked or {}).get(event.episode_id, [])
        else:
            yield event


async def judge_run(run_dir: Path, *, settings: JudgeSettings | None = None,
                    method: Literal["probe", "answers", "rollouts"] | None = None, samples: int | None = None,
                    probes: Mapping[str, Probe] | None = None, system: str | None = None,
                    concurrency: int = 32, replace: bool = True,
                    progress: Callable[[int, int], None] | None = None,
                    scrubber: Scrubber | None = None, forks: ForkSettings | None = None) -> dict[str, Any]:
    """Re-judge every finished episode of a run that is not running; returns the judge summary.

    ``settings``: the scenario's ``judge:`` block (default: defaults with the answers method);
    ``method``/``samples`` override it; ``probes``: agent -> :class:`Probe`, for probe and rollouts (and to
    know whether each final writer thinks); ``system``: the scenario's system prompt, for rollouts;
    ``forks``: fork the episodes' handoff boundaries too (old fork events are replaced).
    ``scrubber`` blanks API keys from what is rewritten. With ``replace`` (or when the run holds no
    judgement yet) the event log is rewritten (old judge
    events replaced, episode ends regraded) and ``summary.json`` and ``judge.json`` are written;
    otherwise the earlier judgement stays the run's and this one goes to ``judge-<method>.json`` and
    ``judge-<method>.jsonl`` beside it. ``progress(done, total)`` is called as episodes are judged.
    The summary says where it went (``written``) and whether it ``replaced`` the earlier one.
    """
    settings = settings or JudgeSettings()
    fields = settings.attribution.model_dump()
    fields["method"] = method or (fields["method"] if fields["method"] != "none" else "answers")
    if samples is not None:
        fields["samples"] = samples
    attribution = AttributionSettings.model_validate(fields)
    probes = probes or {}
    store = open_run(run_dir)
    if scrubber is not None:
        store.scrubber = scrubber
    store.lock()  # before reading: no writer can add episodes under us
    records = {k: r for k, r in store.episodes().items() if r.end is not None and r.end.status == "ok"}
    gate = asyncio.Semaphore(concurrency)
    done = 0
    forked: dict[str, list[ForkEvent]] | None = None if forks is None else {}

    async def one(record: EpisodeRecord) -> Judgement:
        trace = trace_of(record, system)
        writer = probes.get(trace.last_writer or "")
        thinking = writer is None or writer.engine.tokenizer.think_close is not None
        nonlocal done
        async with gate:
            try:
                judgement = await judge_episode(record.id, trace, record.start.gold, attribution=attribution,
                                                checker=checker, probes=probes, seed=record.start.seed,
                                                thinking=thinking)
            except Exception as error:  # this episode stays unjudged; the others go on
                judgement = Judgement(Grade(None, None, "unjudged", f"judge: {type(error).__name__}: {error}"))
            else:
                if forked is not None and forks is not None and record.start.stage is None:
                    forked[record.id] = await record_forks(record, trace, forks, probes, checker)
        done += 1
        if progress is not None:
            progress(done, len(records))
        return judgement

    try:
        async with AnswerChecker(workers=settings.workers, timeout_s=settings.timeout_s) as checker:
            results = await asyncio.gather(*(one(r) for r in records.values()))
        judged = dict(zip(records, results, strict=True))
        earlier = any(record.values or record.verdicts for record in records.values())
        if replace or not earlier:
            store.rewrite(regraded(store.events(), judged, forked))
            episodes = store.episodes()
            store.write_json(SUMMARY, summarize(episodes))
            written = [store.events_path.name, SUMMARY, JUDGE_SUMMARY]
        else:
            episodes = {key: replaced(record, values=[e for e in judged[key].events if isinstance(e, JudgeValue)],
                                      verdicts=[e for e in judged[key].events if isinstance(e, JudgeVerdict)])
                        for key, record in records.items()}
            name = f"judge-{attribution.method}"
            side = [e for j in results for e in j.events] + [e for f in (forked or {}).values() for e in f]
            store.write_text(f"{name}.jsonl", "".join(e.model_dump_json() + "\n" for e in side))
            written = [f"{name}.json", f"{name}.jsonl"]
        verdicts = summarize_verdicts(episodes.values())
        summary = {"method": attribution.method, "samples": attribution.samples, **verdicts,
                   "judged": len(records), "correct": sum(bool(j.grade.correct) for j in results),
                   "replaced": replace or not earlier, "written": written}
        store.write_json(written[-1] if replace or not earlier else written[0], summary)
    finally:
        store.unlock()
    return summary


async def rejudge(run: Path, *, method: Literal["probe", "answers", "rollouts"] | None = None,
                  samples: int | None = None, replace: bool = False,
                  progress: Callable[[int, int], None] | None = None, forks: bool = False) -> dict[str, Any]:
    """Re-judge a finished run; probe, rollouts and forks open the run's engines (the answers method needs none).

    ``forks``: fork every episode at its handoff boundaries, with the scenario's ``judge.forks`` (default:
    every boundary, the writer before it and every writer as alternatives)."""
    open_run(run, needs=(MANIFEST,))
    scenario = load(run / SCENARIO, files=False).scenario
    configured = scenario.judge.attribution.method
    method = method or (configured if configured in ("probe", "rollouts") else "answers")
    engines = {}
    async with contextlib.AsyncExitStack() as stack:
        if method in ("probe", "rollouts") or forks:
            engines = {name: build_engine(name, config) for name, config in scenario.engines.items()}
            for engine in engines.values():
                await stack.enter_async_context(engine)
        probes = writer_probes(scenario, engines)
        fork_settings = None
        if forks:
            writers = [name for name, agent in scenario.agents.items() if agent.role == "writer"]
            fork_settings = scenario.judge.forks or ForkSettings(alternatives=[SAME, *writers])
        names = [name for config in scenario.engines.values() if (name := getattr(config, "api_key_env", None))]
        return await judge_run(run, settings=scenario.judge, method=method, samples=samples, probes=probes or None,
                               system=scenario.prompt.system, replace=replace, progress=progress,
                               scrubber=Scrubber.from_env(names), forks=fork_settings)
