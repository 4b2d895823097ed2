"""Verdicts counted over a run: per agent and per handoff."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from collab.log.store import EpisodeRecord


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
