"""Attribution: who derailed and who rescued each trajectory, and what injections did to it.

A span whose value fell by at least the threshold and ended below 0.5 *derailed* the trajectory;
one whose value rose by at least the threshold and ended at or above 0.5 *rescued* it; any other is
*neutral* (*unjudged* when a value is unknown). An episode with an injected span also gets an
outcome: *recovered* (final answer correct), *followed_injection* (final answer equals an injected
problem's gold answer) or *other_wrong*.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from collab.events import JudgeValue, JudgeVerdict
from collab.judge.answers import AnswerChecker, Grade, response_text
from collab.store import EpisodeRecord
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


def last_writer(trace: Trace) -> str | None:
    return next((s.author for s in reversed(trace.spans) if s.kind == "generated"), None)


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
    return JudgeVerdict(episode_id=episode_id, agent=last_writer(trace), verdict=verdict, method=method,
                        detail=detail)


def summarize_verdicts(records: Iterable[EpisodeRecord]) -> dict[str, Any]:
    """Per agent: derails, rescues, net effect on value, and injection outcomes of the episodes it
    finished; per handoff ``a->b``: how often, verdicts of ``b``'s span and the value change over it."""
    agents: dict[str, Counter] = defaultdict(lambda: Counter(spans=0, derailed=0, rescued=0))
    injected: dict[str, Counter] = defaultdict(Counter)
    net: dict[str, float] = defaultdict(float)
    handoffs: dict[str, Counter] = defaultdict(Counter)
    change: dict[str, float] = defaultdict(float)
    outcomes: Counter = Counter()
    episodes = 0
    for record in records:
        if not record.verdicts:
            continue
        episodes += 1
        for v in record.verdicts:
            agent = v.agent or "-"
            if v.span is None:
                outcomes[v.verdict] += 1
                injected[agent]["episodes"] += 1
                injected[agent][v.verdict] += 1
                continue
            agents[agent]["spans"] += 1
            agents[agent][v.verdict] += 1
            delta = None if v.before is None or v.after is None else v.after - v.before
            net[agent] += delta or 0.0
            previous = v.detail.get("previous")
            if previous is not None and previous != v.agent:
                key = f"{previous}->{v.agent}"
                handoffs[key]["count"] += 1
                handoffs[key][v.verdict] += 1
                if delta is not None:
                    handoffs[key]["judged"] += 1
                    change[key] += delta
    per_agent: dict[str, Any] = {}
    for name in sorted(set(agents) | set(injected)):
        per_agent[name] = {**agents[name], "net_value": round(net[name], 4)}
        if name in injected:
            per_agent[name]["injected"] = dict(injected[name])
    return {
        "episodes": episodes,
        "outcomes": dict(outcomes),
        "per_agent": per_agent,
        "per_handoff": {
            key: {**stats, "value_change": round(change[key], 4),
                  "mean_value_change": round(change[key] / stats["judged"], 4) if stats["judged"] else None}
            for key, stats in sorted(handoffs.items())
        },
    }
