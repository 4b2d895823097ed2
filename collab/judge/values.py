"""Values: at each span boundary of an episode, the chance that the trajectory still ends correct.

Boundary ``b`` is the trace with its first ``b`` spans (0 = the bare prompt); the last boundary's
value is the episode's actual outcome (1 or 0). Two estimators:

- **rollouts**: ``K`` continuations of a probe agent from the boundary, each within a token budget,
  graded like the episode. A rollout that runs out of budget is made to answer: the thinking is
  closed (``</think>``) if still open and ``The final answer is $\\boxed{`` is appended, then the
  probe gets a few more tokens. The first rollout of the deepest boundary goes alone, then every
  other rollout at once: all boundaries' prefixes are prefixes of that one, so prefix caches hit.
- **answers** (cheap, no model calls): follows the answers spans commit to. A writer's (or seed's)
  stated answer becomes the trajectory's current answer; an injected span's answer (its stated one,
  or its source problem's gold) does only when the final answer adopts it. The value is 1 or 0 by the
  current answer's correctness, and 1 while no answer has been committed (presumed on track).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from collab.engines.base import Engine, EngineError, GenerateRequest, RequestContext, Sampling, build_request
from collab.events import JudgeValue
from collab.judge.answers import AnswerChecker, Grade, response_text, stated_answer
from collab.scenario.judging import AttributionSettings
from collab.trace import Span, Trace

FORCE_ANSWER = "The final answer is $\\boxed{"


@dataclass(frozen=True)
class Probe:
    """The agent whose continuations estimate values: an engine plus its sampling settings."""

    engine: Engine
    agent: str = ""
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = -1
    seed: int | None = None


def outcome_value(episode_id: str, boundary: int, grade: Grade, method: str) -> JudgeValue:
    """The value at the last boundary: what actually happened."""
    value = None if grade.correct is None else float(grade.correct)
    return JudgeValue(episode_id=episode_id, boundary=boundary, value=value, method=method,
                      detail={"outcome": True, "answer": grade.answer, "reason": grade.reason})


def _mean(grades: list[Grade]) -> float | None:
    judged = [g.correct for g in grades if g.correct is not None]
    return sum(judged) / len(judged) if judged else None


class _Rollouts:
    """Rollouts of one probe over one episode's trace."""

    def __init__(self, episode_id: str, trace: Trace, gold: str, probe: Probe, settings: AttributionSettings,
                 checker: AnswerChecker, seed: int) -> None:
        self.episode_id, self.trace, self.gold = episode_id, trace, gold
        self.probe, self.settings, self.checker = probe, settings, checker
        self.base = probe.seed if probe.seed is not None else seed
        tokenizer = probe.engine.tokenizer
        self.ids = list(trace.input_ids(tokenizer))
        self.offsets = [trace.prompt_length(tokenizer)]
        for span in trace.spans:
            self.offsets.append(self.offsets[-1] + len(span.ids_for(tokenizer)))

    def request(self, input_ids: list[int], max_new_tokens: int, boundary: int, k: int) -> GenerateRequest:
        probe = self.probe
        return build_request(
            probe.engine.tokenizer, input_ids, max_new_tokens, Sampling(probe.temperature, probe.top_p, probe.top_k),
            seed=(self.base * 1_000_003 + boundary * 1009 + k) % 2**31,
            context=RequestContext(self.episode_id, probe.agent, boundary, "rollout"),
        )

    async def one(self, boundary: int, k: int) -> tuple[Grade, bool]:
        """One rollout from ``boundary``, graded; and whether it had to be made to answer."""
        engine, tokenizer = self.probe.engine, self.probe.engine.tokenizer
        prefix = self.ids[: self.offsets[boundary]]
        try:
            out = await engine.generate(self.request(prefix, self.settings.max_tokens, boundary, k))
            text, forced = out.text, out.finish_reason == "length"
            if forced:
                written = "".join(span.text for span in self.trace.spans[:boundary]) + text
                closed = tokenizer.think_close is None or tokenizer.think_close in written
                suffix = ("\n\n" if closed else f"\n{tokenizer.think_close}\n\n") + FORCE_ANSWER
                ids = prefix + out.token_ids + tokenizer.encode(suffix)
                answer = await engine.generate(self.request(ids, self.settings.answer_tokens, boundary, k))
                text += suffix + answer.text
        except EngineError as error:
            return Grade(None, None, "unjudged", f"engine {engine.name}: {error}"), False
        spans = [*self.trace.spans[:boundary], Span(self.probe.agent, "generated", text)]
        return await self.checker.check(response_text(spans), self.gold,
                                        thinking=tokenizer.think_close is not None), forced

    async def values(self, grade: Grade) -> list[JudgeValue]:
        samples, last = self.settings.samples, len(self.trace.spans)
        jobs = [(b, k) for b in range(last - 1, -1, -1) for k in range(samples)]
        results: list[tuple[Grade, bool]] = []
        if jobs:
            results.append(await self.one(*jobs[0]))  # warms the longest prefix
            results += await asyncio.gather(*(self.one(b, k) for b, k in jobs[1:]))
        by_boundary: dict[int, list[tuple[Grade, bool]]] = {}
        for (b, _), result in zip(jobs, results, strict=False):
            by_boundary.setdefault(b, []).append(result)
        values = []
        for b in range(last):
            grades = [g for g, _ in by_boundary[b]]
            detail: dict[str, Any] = {
                "probe": self.probe.agent, "answers": [g.answer for g in grades],
                "correct": [g.correct for g in grades], "forced": sum(f for _, f in by_boundary[b]),
            }
            unjudged = [g.reason for g in grades if g.correct is None]
            if unjudged:
                detail["unjudged"] = unjudged
            values.append(JudgeValue(episode_id=self.episode_id, boundary=b, value=_mean(grades),
                                     method="rollouts", samples=samples, detail=detail))
        return [*values, outcome_value(self.episode_id, last, grade, "rollouts")]


async def rollout_values(episode_id: str, trace: Trace, gold: str, grade: Grade, probe: Probe,
                         settings: AttributionSettings, checker: AnswerChecker, *, seed: int = 0) -> list[JudgeValue]:
    """Values at every boundary from ``settings.samples`` rollouts of ``probe`` (``grade``: the outcome)."""
    return await _Rollouts(episode_id, trace, gold, probe, settings, checker, seed).values(grade)


async def _adopted(candidates: list[str], response: str, checker: AnswerChecker, thinking: bool) -> str | None:
    """The first candidate answer the final response gives, if any."""
    for answer in candidates:
        if (await checker.check(response, answer, thinking=thinking)).correct:
            return answer
    return None


async def answer_values(episode_id: str, trace: Trace, gold: str, grade: Grade, checker: AnswerChecker,
                        *, thinking: bool = True) -> list[JudgeValue]:
    """Values at every boundary from the answers the spans commit to (no model calls)."""
    if not trace.spans:
        return [outcome_value(episode_id, 0, grade, "answers")]
    response = response_text(trace.spans)
    current: str | None = None
    value: float | None = 1.0
    values = [JudgeValue(episode_id=episode_id, boundary=0, value=value, method="answers", detail={"answer": None})]
    for b, span in enumerate(trace.spans[:-1], start=1):
        stated = stated_answer(span.text)
        if span.kind == "injected":
            source = span.meta.get("source_answer")
            candidates = [str(a) for a in (source, stated) if a is not None]
            stated = await _adopted(candidates, response, checker, thinking)
        if stated is not None and stated != current:
            current = stated
            value = await checker.equal(gold, current)
            value = None if value is None else float(value)
        values.append(JudgeValue(episode_id=episode_id, boundary=b, value=value, method="answers",
                                 detail={"answer": current, "committed": stated}))
    return [*values, outcome_value(episode_id, len(trace.spans), grade, "answers")]
