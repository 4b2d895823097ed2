"""Counterfactual forks: what would have happened had another agent continued at a handoff boundary.

From the exact prefix at a boundary (the trace's first ``b`` spans, in the alternative's own token
ids), each alternative agent continues alone to the end, ``K`` times, within a token budget (then it is
made to answer, as rollouts are); nothing is written into the real trace. Each continuation is graded
like an episode. Per engine the deepest boundary's first continuation goes alone, then every other at
once: all boundaries' prefixes are prefixes of that one, so prefix caches compute each token once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from collab.engines.base import EngineError, RequestContext, Sampling, build_request
from collab.events import ForkEvent
from collab.judge.answers import AnswerChecker, Grade, response_text
from collab.judge.values import FORCE_ANSWER, Probe
from collab.scenario.judging import ForkSettings
from collab.scenario.seeds import stable_int
from collab.trace import Span, Trace

SAME = "same"


@dataclass(frozen=True)
class Boundary:
    """A handoff boundary: before span ``index``, which ``actual`` wrote in ``turn``; ``previous`` wrote last."""

    index: int
    turn: str
    actual: str
    previous: str | None


def boundaries(spans: Sequence[tuple[str, str, str]], at: str | list[str]) -> list[Boundary]:
    """The boundaries to fork at, from each span's ``(turn, agent, kind)``: before every span but the first
    (``at == "all"``), or before spans of the named turns."""
    found, previous = [], None
    for index, (turn, agent, kind) in enumerate(spans):
        if index > 0 and (at == "all" or turn in at):
            found.append(Boundary(index, turn, agent, previous))
        if kind == "generated":
            previous = agent
    return found


@dataclass
class _Cost:
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "generated_tokens": self.generated_tokens}


@dataclass
class _Fork:
    boundary: Boundary
    label: str
    agent: str
    grades: list[Grade | None] = field(default_factory=list)
    cost: _Cost = field(default_factory=_Cost)


class _Forks:
    """The forks of one episode."""

    def __init__(self, episode_id: str, trace: Trace, gold: str, settings: ForkSettings,
                 probes: Mapping[str, Probe], checker: AnswerChecker, seed: int) -> None:
        self.episode_id, self.trace, self.gold = episode_id, trace, gold
        self.settings, self.probes, self.checker, self.seed = settings, probes, checker, seed

    def prefix(self, probe: Probe, boundary: int) -> list[int]:
        tokenizer = probe.engine.tokenizer
        length = self.trace.prompt_length(tokenizer) + sum(
            len(span.ids_for(tokenizer)) for span in self.trace.spans[:boundary])
        return list(self.trace.input_ids(tokenizer)[:length])

    async def one(self, fork: _Fork, k: int) -> None:
        """One continuation of ``fork``, graded; its requests and tokens counted."""
        probe = self.probes[fork.agent]
        engine, tokenizer = probe.engine, probe.engine.tokenizer
        b = fork.boundary.index
        sampling = Sampling(probe.temperature, probe.top_p, probe.top_k)
        seed = stable_int(probe.seed if probe.seed is not None else self.seed, "fork", b, fork.agent, k)
        context = RequestContext(self.episode_id, fork.agent, b, "rollout")
        ids = self.prefix(probe, b)
        try:
            out = await engine.generate(build_request(tokenizer, ids, self.settings.max_tokens, sampling,
                                                      seed=seed, context=context))
            completions, text = [out], out.text
            if out.finish_reason == "length":
                written = "".join(span.text for span in self.trace.spans[:b]) + text
                closed = tokenizer.think_close is None or tokenizer.think_close in written
                suffix = ("\n\n" if closed else f"\n{tokenizer.think_close}\n\n") + FORCE_ANSWER
                more = ids + out.token_ids + tokenizer.encode(suffix)
                answer = await engine.generate(build_request(tokenizer, more, self.settings.answer_tokens, sampling,
                                                             seed=seed, context=context))
                completions.append(answer)
                text += suffix + answer.text
        except EngineError:
            fork.grades.append(None)
            return
        for completion in completions:
            fork.cost.requests += 1
            fork.cost.prompt_tokens += completion.prompt_tokens
            fork.cost.cached_tokens += completion.cached_tokens
            fork.cost.generated_tokens += len(completion.token_ids)
        spans = [*self.trace.spans[:b], Span(fork.agent, "generated", text)]
        fork.grades.append(await self.checker.check(response_text(spans), self.gold,
                                                    thinking=tokenizer.think_close is not None))

    async def run(self, found: list[Boundary]) -> list[ForkEvent]:
        forks = []
        for boundary in found:
            taken = set()  # `same` and an agent's own name may name one agent: it is forked once
            for label in self.settings.alternatives:
                agent = boundary.previous if label == SAME else label
                if agent is not None and agent in self.probes and agent not in taken:
                    taken.add(agent)
                    forks.append(_Fork(boundary, label, agent))
        jobs = sorted(((f, k) for f in forks for k in range(self.settings.samples)),
                      key=lambda job: -job[0].boundary.index)
        first: dict[int, tuple[_Fork, int]] = {}
        for job in jobs:  # the deepest prefix on each engine goes first and warms it
            first.setdefault(id(self.probes[job[0].agent].engine), job)
        await asyncio.gather(*(self.one(*job) for job in first.values()))
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def bounded(fork: _Fork, k: int) -> None:
            async with gate:
                await self.one(fork, k)

        warmed = {id(job) for job in first.values()}
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                if id(job) not in warmed:
                    group.create_task(bounded(*job))
        return [self._event(fork) for fork in forks]

    def _event(self, fork: _Fork) -> ForkEvent:
        grades = fork.grades
        judged = [g.correct for g in grades if g is not None and g.correct is not None]
        boundary = fork.boundary
        return ForkEvent(
            episode_id=self.episode_id, boundary=boundary.index, turn=boundary.turn, actual=boundary.actual,
            previous=boundary.previous, alternative=fork.agent, label=fork.label, samples=len(grades),
            correct=[None if g is None else g.correct for g in grades],
            answers=[None if g is None else g.answer for g in grades],
            value=sum(judged) / len(judged) if judged else None, cost=fork.cost.as_dict(),
        )


async def fork_episode(episode_id: str, trace: Trace, gold: str | None, found: list[Boundary],
                       settings: ForkSettings, probes: Mapping[str, Probe], checker: AnswerChecker,
                       *, seed: int = 0) -> list[ForkEvent]:
    """``fork`` events for an episode's boundaries ``found`` (none without a gold answer to grade against)."""
    if gold is None or not found:
        return []
    return await _Forks(episode_id, trace, gold, settings, probes, checker, seed).run(found)
