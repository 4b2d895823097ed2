"""Values: at each span boundary of an episode, the chance that the trajectory still ends correct.

Boundary ``b`` is the trace with its first ``b`` spans (0 = the bare prompt); the last boundary's
value is the episode's actual outcome (1 or 0). Three estimators:

- **probe** (cheap, the default): the probe agent is asked for its final answer at the boundary: the
  thinking is closed there (the model's end-of-thinking tag, when it has one) and
  ``The final answer is $\\boxed{`` appended; it decodes a few tokens, ``K`` times (greedy by
  default, so once). The value is the share of those answers that are correct. The deepest boundary
  goes first, then the rest at once, so every request reuses the cached trace.
- **rollouts**: ``K`` continuations of a probe agent from the boundary, each within a token budget,
  graded like the episode. A rollout that runs out of budget is made to answer: the thinking is
  closed (``</think>``) if still open and ``The final answer is $\\boxed{`` is appended, then the
  probe gets a few more tokens. The first rollout of the deepest boundary goes alone, then every
  other rollout at once: all boundaries' prefixes are prefixes of that one, so prefix caches hit.
- **answers** (cheap, no model calls): follows the answers spans commit to. A writer's (or seed's)
  stated answer becomes the trajectory's current answer; an injected span's answer (its stated one,
  or its source problem's gold) does only when the final answer adopts it. The value is 1 or 0 by the
  current answer's correctness, and unknown (``None``) until an answer is committed: an unknown
  boundary never yields a verdict, so the last writer is not blamed for an answer others derived.

Each value's ``detail`` counts what it cost: ``requests``, ``prompt_tokens`` and ``tokens`` generated.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from collab.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerateRequest,
    RequestContext,
    Sampling,
    build_request,
)
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
    """Rollouts (or final-answer probes) of one probe agent over one episode's trace."""

    def __init__(self, episode_id: str, trace: Trace, gold: str, probe: Probe, settings: AttributionSettings,
                 checker: AnswerChecker, seed: int, method: str) -> None:
        self.method = method
        self.episode_id, self.trace, self.gold = episode_id, trace, gold
        self.probe, self.settings, self.checker = probe, settings, checker
        self.base = probe.seed if probe.seed is not None else seed
        greedy = 0.0 if method == "probe" else probe.temperature
        self.temperature = greedy if settings.temperature is None else settings.temperature
        tokenizer = probe.engine.tokenizer
        self.ids = list(trace.input_ids(tokenizer))
        self.offsets = [trace.prompt_length(tokenizer)]
        for span in trace.spans:
            self.offsets.append(self.offsets[-1] + len(span.ids_for(tokenizer)))

    def request(self, input_ids: list[int], max_new_tokens: int, boundary: int, k: int) -> GenerateRequest:
        probe = self.probe
        return build_request(
            probe.engine.tokenizer, input_ids, max_new_tokens, Sampling(self.temperature, probe.top_p, probe.top_k),
            seed=(self.base * 1_000_003 + boundary * 1009 + k) % 2**31,
            context=RequestContext(self.episode_id, probe.agent, boundary, "rollout"),
        )

    def answer_suffix(self, written: str) -> str:
        """What makes the probe answer after ``written``: close the thinking if open, then ask for the box."""
        think_close = self.probe.engine.tokenizer.think_close
        closed = think_close is None or think_close in written
        return ("\n\n" if closed else f"\n{think_close}\n\n") + FORCE_ANSWER

    async def generate(self, request: GenerateRequest, cost: Counter[str]) -> Completion:
        out = await self.probe.engine.generate(request)
        cost.update(requests=1, prompt_tokens=len(request.input_ids), tokens=len(out.token_ids))
        return out

    async def one(self, boundary: int, k: int) -> tuple[Grade, bool, Counter[str]]:
        """One rollout from ``boundary``, graded; whether it had to be made to answer; what it cost."""
        engine, cost = self.probe.engine, Counter[str]()
        prefix = self.ids[: self.offsets[boundary]]
        written = "".join(span.text for span in self.trace.spans[:boundary])
        try:
            out = await self.generate(self.request(prefix, self.settings.max_tokens, boundary, k), cost)
            text, forced = out.text, out.finish_reason == "length"
            if forced:
                suffix = self.answer_suffix(written + text)
                ids = prefix + out.token_ids + engine.tokenizer.encode(suffix)
                answer = await self.generate(self.request(ids, self.settings.answer_tokens, boundary, k), cost)
                text += suffix + answer.text
        except EngineError as error:
            return Grade(None, None, "unjudged", f"engine {engine.name}: {error}"), False, cost
        return await self.graded(boundary, text), forced, cost

    async def ask(self, boundary: int, k: int) -> tuple[Grade, bool, Counter[str]]:
        """The probe's final answer at ``boundary``: the thinking closed there and a few tokens decoded."""
        engine, cost = self.probe.engine, Counter[str]()
        written = "".join(span.text for span in self.trace.spans[:boundary])
        suffix = self.answer_suffix(written)
        ids = self.ids[: self.offsets[boundary]] + engine.tokenizer.encode(suffix)
        try:
            out = await self.generate(self.request(ids, self.settings.answer_tokens, boundary, k), cost)
        except EngineError as error:
            return Grade(None, None, "unjudged", f"engine {engine.name}: {error}"), True, cost
        return await self.graded(boundary, suffix + out.text), True, cost

    async def graded(self, boundary: int, text: str) -> Grade:
        spans = [*self.trace.spans[:boundary], Span(self.probe.agent, "generated", text)]
        return await self.checker.check(response_text(spans), self.gold,
                                        thinking=self.probe.engine.tokenizer.think_close is not None)

    async def values(self, grade: Grade) -> list[JudgeValue]:
        method = self.method
        samples, last = self.samples(), len(self.trace.spans)
        run = self.ask if method == "probe" else self.one
        jobs = [(b, k) for b in range(last - 1, -1, -1) for k in range(samples)]
        results: list[tuple[Grade, bool, Counter[str]]] = []
        if jobs:
            results.append(await run(*jobs[0]))  # warms the longest prefix
            results += await asyncio.gather(*(run(b, k) for b, k in jobs[1:]))
        by_boundary: dict[int, list[tuple[Grade, bool, Counter[str]]]] = {}
        for (b, _), result in zip(jobs, results, strict=True):
            by_boundary.setdefault(b, []).append(result)
        values = []
        for b in range(last):
            grades = [g for g, _, _ in by_boundary[b]]
            cost = sum((c for _, _, c in by_boundary[b]), Counter[str]())
            detail: dict[str, Any] = {
                "probe": self.probe.agent, "answers": [g.answer for g in grades],
                "correct": [g.correct for g in grades], "forced": sum(f for _, f, _ in by_boundary[b]),
                "requests": cost["requests"], "prompt_tokens": cost["prompt_tokens"], "tokens": cost["tokens"],
            }
            unjudged = [g.reason for g in grades if g.correct is None]
            if unjudged:
                detail["unjudged"] = unjudged
            values.append(JudgeValue(episode_id=self.episode_id, boundary=b, value=_mean(grades),
                                     method=method, samples=samples, detail=detail))
        return [*values, outcome_value(self.episode_id, last, grade, method)]

    def samples(self) -> int:
        """Requests per boundary: K, but one when the K samples are greedy (hence identical)."""
        return 1 if self.method == "probe" and self.temperature == 0 else self.settings.samples


async def rollout_values(episode_id: str, trace: Trace, gold: str, grade: Grade, probe: Probe,
                         settings: AttributionSettings, checker: AnswerChecker, *, seed: int = 0) -> list[JudgeValue]:
    """Values at every boundary from ``settings.samples`` rollouts of ``probe`` (``grade``: the outcome)."""
    return await _Rollouts(episode_id, trace, gold, probe, settings, checker, seed, "rollouts").values(grade)


async def probe_values(episode_id: str, trace: Trace, gold: str, grade: Grade, probe: Probe,
                       settings: AttributionSettings, checker: AnswerChecker, *, seed: int = 0) -> list[JudgeValue]:
    """Values at every boundary from ``probe``'s final answer there (``grade``: the outcome)."""
    return await _Rollouts(episode_id, trace, gold, probe, settings, checker, seed, "probe").values(grade)


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
    value: float | None = None  # unknown until an answer is committed
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
