"""Re-judge a finished run from its event log, without re-simulating its episodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from collab.engines import build_engine
from collab.events import EpisodeEnd, ForkEvent, JudgeValue, JudgeVerdict
from collab.judge.answers import AnswerChecker, Grade
from collab.judge.episode import Judgement, judge_episode
from collab.judge.forks import SAME
from collab.judge.values import Probe
from collab.log.store import (
    EVENTS,
    MANIFEST,
    SCENARIO,
    SUMMARY,
    EpisodeRecord,
    RunStore,
    StoreError,
)
from collab.report.summary import summarize
from collab.report.verdicts import summarize_verdicts
from collab.scenario import load
from collab.scenario.judging import AttributionSettings, ForkSettings, JudgeSettings
from collab.sim.forking import record_forks
from collab.sim.runner import writer_probes
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


def _rewrite(store: RunStore, judged: dict[str, Judgement], forked: dict[str, list[ForkEvent]] | None) -> None:
    """The log with old judge events (and with ``forked``, old forks) dropped, episode ends regraded, new judge
    events (and forks) after each end."""
    lines: list[bytes] = []
    for event in store.events():
        if isinstance(event, (JudgeValue, JudgeVerdict)) or (forked is not None and isinstance(event, ForkEvent)):
            continue
        judgement = judged.get(getattr(event, "episode_id", ""))
        if isinstance(event, EpisodeEnd) and judgement is not None:
            grade = judgement.grade
            event.answer, event.correct = grade.answer, grade.correct
            event.judge_reason = grade.reason if grade.status != "ok" else None
            lines.append(store.scrubber.line(event))
            lines += [store.scrubber.line(e) for e in judgement.events]
            lines += [store.scrubber.line(e) for e in (forked or {}).get(event.episode_id, [])]
            continue
        lines.append(store.scrubber.line(event))
    store.replace(EVENTS, b"".join(lines))


async def judge_run(run_dir: Path, *, settings: JudgeSettings | None = None,
                    method: Literal["answers", "rollouts"] | None = None, samples: int | None = None,
                    probes: Mapping[str, Probe] | None = None, system: str | None = None,
                    concurrency: int = 32, forks: ForkSettings | None = None) -> dict[str, Any]:
    """Re-judge every finished episode of a run that is not running; returns the judge summary.

    ``settings``: the scenario's ``judge:`` block (default: defaults with the answers method);
    ``method``/``samples`` override it; ``probes``: agent -> :class:`Probe`, for rollouts (and to
    know whether each final writer thinks); ``system``: the scenario's system prompt, for rollouts;
    ``forks``: fork the episodes' handoff boundaries too (old fork events are replaced).
    The event log is rewritten (old judge events replaced, episode ends regraded), and
    ``summary.json`` and ``judge.json`` are written.
    """
    settings = settings or JudgeSettings()
    fields = settings.attribution.model_dump()
    fields["method"] = method or (fields["method"] if fields["method"] != "none" else "answers")
    if samples is not None:
        fields["samples"] = samples
    attribution = AttributionSettings.model_validate(fields)
    probes = probes or {}
    store = RunStore(Path(run_dir))
    if not store.events_path.exists():
        raise StoreError(f"no event log at {store.events_path}")
    records = {k: r for k, r in store.episodes().items() if r.end is not None and r.end.status == "ok"}
    gate = asyncio.Semaphore(concurrency)
    forked: dict[str, list[ForkEvent]] | None = None if forks is None else {}

    async def one(record: EpisodeRecord) -> Judgement:
        trace = trace_of(record, system)
        writer = probes.get(trace.last_writer or "")
        thinking = writer is None or writer.engine.tokenizer.think_close is not None
        async with gate:
            try:
                judgement = await judge_episode(record.id, trace, record.start.gold, attribution=attribution,
                                                checker=checker, probes=probes, seed=record.start.seed,
                                                thinking=thinking)
            except Exception as error:  # this episode stays unjudged; the others go on
                return Judgement(Grade(None, None, "unjudged", f"judge: {type(error).__name__}: {error}"))
            if forked is not None and forks is not None and record.start.stage is None:
                forked[record.id] = await record_forks(record, trace, forks, probes, checker)
            return judgement

    store.lock()
    try:
        async with AnswerChecker(workers=settings.workers, timeout_s=settings.timeout_s) as checker:
            results = await asyncio.gather(*(one(r) for r in records.values()))
        judged = dict(zip(records, results, strict=True))
        _rewrite(store, judged, forked)
        episodes = store.episodes()
        store.write_json(SUMMARY, summarize(episodes))
        verdicts = summarize_verdicts(episodes.values())
        summary = {"method": attribution.method, "samples": attribution.samples, **verdicts}
        store.write_json(JUDGE_SUMMARY, summary)
    finally:
        store.unlock()
    return summary


async def rejudge(run: Path, *, method: Literal["answers", "rollouts"] | None = None,
                  samples: int | None = None, forks: bool = False) -> dict[str, Any]:
    """Re-judge a finished run; rollouts and forks open the run's engines (the answers method needs none).

    ``forks``: fork every episode at its handoff boundaries, with the scenario's ``judge.forks`` (default:
    every boundary, the writer before it and every writer as alternatives)."""
    if not (run / MANIFEST).exists():
        raise StoreError(f"{run} is not a run folder (no {MANIFEST})")
    scenario = load(run / SCENARIO).scenario
    method = method or ("rollouts" if scenario.judge.attribution.method == "rollouts" else "answers")
    engines = {}
    async with contextlib.AsyncExitStack() as stack:
        if method == "rollouts" or forks:
            engines = {name: build_engine(name, config) for name, config in scenario.engines.items()}
            for engine in engines.values():
                await stack.enter_async_context(engine)
        probes = writer_probes(scenario, engines)
        fork_settings = None
        if forks:
            writers = [name for name, agent in scenario.agents.items() if agent.role == "writer"]
            fork_settings = scenario.judge.forks or ForkSettings(alternatives=[SAME, *writers])
        return await judge_run(run, settings=scenario.judge, method=method, samples=samples, probes=probes or None,
                               system=scenario.prompt.system, forks=fork_settings)
