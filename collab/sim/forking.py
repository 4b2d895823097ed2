"""Counterfactual forks of a simulated episode, or of a finished run's episode (see :mod:`collab.judge.forks`)."""

from __future__ import annotations

from collections.abc import Mapping

from collab.events import ForkEvent
from collab.judge import AnswerChecker, Probe
from collab.judge.forks import boundaries, fork_episode
from collab.log.store import EpisodeRecord
from collab.scenario.judging import ForkSettings
from collab.sim.episode import Episode
from collab.trace import Trace


async def episode_forks(episode: Episode, settings: ForkSettings, probes: Mapping[str, Probe],
                        checker: AnswerChecker) -> list[ForkEvent]:
    """Forks of a just finished episode, from its in-memory trace."""
    spans = [(node, span.author, span.kind) for node, span in zip(episode.nodes, episode.trace.spans, strict=True)]
    return await fork_episode(episode.spec.id, episode.trace, episode.spec.problem.answer,
                              boundaries(spans, settings.at), settings, probes, checker, seed=episode.spec.seed)


async def record_forks(record: EpisodeRecord, trace: Trace, settings: ForkSettings, probes: Mapping[str, Probe],
                       checker: AnswerChecker) -> list[ForkEvent]:
    """Forks of a finished run's episode, from its trace rebuilt from the log."""
    spans = [(s.turn, s.agent, s.kind) for s in sorted(record.spans, key=lambda s: s.index)]
    return await fork_episode(record.id, trace, record.start.gold, boundaries(spans, settings.at), settings, probes,
                              checker, seed=record.start.seed)
