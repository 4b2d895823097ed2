"""Judge one episode: grade its final answer, value its span boundaries, attribute each span."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collab.events import JudgeValue, JudgeVerdict
from collab.judge.answers import AnswerChecker, Grade, extract_answer, response_text
from collab.judge.attribution import injection_outcome, span_verdicts
from collab.judge.values import Probe, answer_values, outcome_value, probe_values, rollout_values
from collab.scenario.judging import AttributionSettings
from collab.trace import Trace


@dataclass
class Judgement:
    """What the judge says about one episode."""

    grade: Grade
    """The final answer's grade (what ``episode.end`` records)."""
    events: list[JudgeValue | JudgeVerdict] = field(default_factory=list)
    """``judge.value`` per boundary, ``judge.verdict`` per span, and the injection outcome if any."""


def pick_probe(trace: Trace, attribution: AttributionSettings, probes: Mapping[str, Probe]) -> Probe | None:
    """The configured probe agent, else the episode's last writer (``None`` if nobody wrote)."""
    name = attribution.probe or trace.last_writer
    if name is None:
        return None
    if name not in probes:
        raise ValueError(f"{attribution.method} needs a probe for agent {name!r}; have {sorted(probes)}")
    return probes[name]


async def judge_episode(episode_id: str, trace: Trace, gold: str | None, *, attribution: AttributionSettings,
                        checker: AnswerChecker, probes: Mapping[str, Probe] | None = None, seed: int = 0,
                        thinking: bool = True) -> Judgement:
    """Grade ``trace``'s response against ``gold`` and, per ``attribution.method``, judge its spans.

    ``thinking``: whether the final writer's model thinks (its answer follows ``</think>``);
    ``probes``: agent name -> :class:`Probe`, needed by the probe and rollouts methods; ``seed``: the episode's.
    """
    response = response_text(trace.spans)
    if gold is None:
        return Judgement(Grade(None, extract_answer(response, thinking), "unjudged", "no gold answer"))
    grade = await checker.check(response, gold, thinking=thinking)
    method = attribution.method
    outcome = await injection_outcome(episode_id, trace, grade, checker, thinking=thinking, method=method)
    if method == "none":  # no values, but an injection's outcome all the same
        return Judgement(grade, [outcome] if outcome is not None else [])
    if method in ("probe", "rollouts"):
        probe = pick_probe(trace, attribution, probes or {})
        estimate = probe_values if method == "probe" else rollout_values
        if probe is None:
            values = [outcome_value(episode_id, len(trace.spans), grade, method)]
        else:
            values = await estimate(episode_id, trace, gold, grade, probe, attribution, checker, seed=seed)
    else:
        values = await answer_values(episode_id, trace, gold, grade, checker, thinking=thinking)
    events: list[JudgeValue | JudgeVerdict] = [*values]
    events += span_verdicts(episode_id, trace, values, attribution.threshold, method)
    if outcome is not None:
        events.append(outcome)
    return Judgement(grade, events)
