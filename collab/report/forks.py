"""Counterfactual forks in the report: per handoff, the actual outcome against each alternative's, and their cost."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from collab.log.store import EpisodeRecord
from collab.report.intervals import wilson
from collab.report.section import Section

COST_KEYS = ("requests", "prompt_tokens", "cached_tokens", "generated_tokens")


def fork_table(records: list[EpisodeRecord]) -> Section | None:
    """One row per handoff (previous writer -> actual agent, at a turn) and alternative: how often the episode
    actually ended correct, how often the alternative's continuations did (95% Wilson intervals), and the
    estimated effect of the actual choice (actual rate minus the alternative's)."""
    groups: dict[tuple[str, str], list[tuple[EpisodeRecord, Any]]] = defaultdict(list)
    for record in records:
        for fork in record.forks:
            handoff = f"{fork.previous or '-'} → {fork.actual} ({fork.turn})"
            name = fork.alternative if fork.label == fork.alternative else f"{fork.label} ({fork.alternative})"
            groups[(handoff, name)].append((record, fork))
    if not groups:
        return None

    def rate(correct: int, total: int) -> str:
        interval = wilson(correct, total)
        if interval is None:
            return "-"
        return f"{correct / total:.0%} [{interval[0]:.0%}–{interval[1]:.0%}] of {total}"

    rows = []
    for (handoff, name), found in sorted(groups.items()):
        actual = [r.end.correct for r, _ in found if r.end is not None and r.end.correct is not None]
        alternative = [c for _, f in found for c in f.correct if c is not None]
        effect = "-"
        if actual and alternative:
            effect = f"{sum(actual) / len(actual) - sum(alternative) / len(alternative):+.0%}"
        rows.append([handoff, name, str(len(found)), rate(sum(actual), len(actual)),
                     rate(sum(alternative), len(alternative)), effect])
    cost = fork_cost(records) or {}
    note = (f"alternatives continue alone from the exact prefix; effect = actual rate − alternative rate. Cost: "
            f"{cost.get('continuations', 0)} continuations, {cost.get('requests', 0)} requests, prefill "
            f"{cost.get('prefill_computed', 0)} computed / {cost.get('cached_tokens', 0)} cached, "
            f"{cost.get('generated_tokens', 0)} generated tokens")
    return Section("Counterfactual forks", ["handoff", "alternative", "boundaries", "actual correct",
                                            "alternative correct", "effect of actual"], rows, keys=2, note=note)


def fork_cost(records: list[EpisodeRecord]) -> dict[str, Any] | None:
    """What the forks cost: continuations, requests, prefill computed and cached, generated tokens."""
    forks = [fork for record in records for fork in record.forks]
    if not forks:
        return None
    totals = {key: sum(f.cost.get(key, 0) for f in forks) for key in COST_KEYS}
    return {"forks": len(forks), "continuations": sum(f.samples for f in forks), **totals,
            "prefill_computed": totals["prompt_tokens"] - totals["cached_tokens"]}
