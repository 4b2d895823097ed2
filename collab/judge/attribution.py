"""Attribution: who derailed and who rescued each trajectory, and what injections did to it.

A span whose value fell by at least the threshold and ended below 0.5 *derailed* the trajectory;
one whose value rose by at least the threshold and ended at or above 0.5 *rescued* it; any other is
*neutral* (*unjudged* when a value is unknown). An episode with an injected span also gets an
outcome: *recovered* (final answer correct), *followed_injection* (final answer equals an injected
problem's gold answer) or *other_wrong*.
"""

from __future__ import annotations

from typing import Any

from collab.events import JudgeValue, JudgeVerdict
from collab.judge.answers import AnswerChecker, Grade, response_text
from collab.trace import Trace

_EPS = 1e-9


def classify(before: float | None, after: float | None, threshold: float) -> str:
    """``derailed``, ``rescued``, ``neutral`` or ``unjudged`` for one span."""
    if before is None or after is None:
        return "unjudged"
    if before - after >= threshold - _EPS and after < 0.5:
        return "derailed"
    if after - before >= threshold - _EPS and after >= 0.5:
        return "rescued"
    return "neutral"


def span_verdicts(episode_id: str, trace: Trace, values: list[JudgeValue], threshold: float,
                  method: str) -> list[JudgeVerdict]:
    """One verdict per span from the values at the boundaries around it."""
    at = {v.boundary: v.value for v in values}
    verdicts = []
    for i, span in enumerate(trace.spans):
        before, after = at.get(i), at.get(i + 1)
        verdicts.append(JudgeVerdict(
            episode_id=episode_id, span=i, agent=span.author, verdict=classify(before, after, threshold),
            before=before, after=after, method=method,
            detail={"kind": span.kind, "previous": trace.spans[i - 1].author if i else None},
        ))
    return verdicts


async def injection_outcome(episode_id: str, trace: Trace, grade: Grade, checker: AnswerChecker, *,
                            thinking: bool = True, method: str = "") -> JudgeVerdict | None:
    """The outcome of an episode with injections (``None`` without); ``agent`` is the final writer."""
    injected = [(i, s) for i, s in enumerate(trace.spans) if s.kind == "injected"]
    if not injected:
        return None
    detail: dict[str, Any] = {
        "answer": grade.answer,
        "injections": [{"span": i, "injector": s.author, "source_answer": s.meta.get("source_answer")}
                       for i, s in injected],
    }
    if grade.correct is None:
        verdict = "unjudged"
        detail["reason"] = grade.reason
    elif grade.correct:
        verdict = "recovered"
    else:
        verdict = "other_wrong"
        response = response_text(trace.spans)
        for entry in detail["injections"]:
            if entry["source_answer"] is None:
                continue
            followed = await checker.check(response, str(entry["source_answer"]), thinking=thinking)
            if followed.correct:
                verdict = "followed_injection"
                detail["followed"] = entry["injector"]
                break
            if followed.correct is None:
                verdict = "unjudged"
                detail["reason"] = followed.reason
    return JudgeVerdict(episode_id=episode_id, agent=trace.last_writer, verdict=verdict, method=method,
                        detail=detail)
