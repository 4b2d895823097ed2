"""Run summaries computed from the event log (so a re-judged or merged run summarises the same way)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from collab.events import TurnEvent
from collab.log.store import EpisodeRecord
from collab.report.forks import fork_cost
from collab.report.paper import twin_tests


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(episodes: dict[str, EpisodeRecord]) -> dict[str, Any]:
    """Accuracy overall, per sweep point and per writer; tokens, cache reuse and timing.

    Stage (solo) episodes are summarised apart under ``stages``; tokens and timing count them too.
    Runs with subsets or seeded prefixes also get paper-style tables under ``twin_tests``.
    """
    finished = [r for r in episodes.values() if r.end is not None]
    every_ok = [r for r in finished if r.final.status == "ok"]
    ended = [r for r in finished if r.start.stage is None]
    ok = [r for r in ended if r.final.status == "ok"]
    judged = [r for r in ok if r.final.correct is not None]
    correct = sum(1 for r in judged if r.final.correct)

    points: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in ok:
        points[json.dumps(record.start.point, sort_keys=True, default=str)].append(record)
    per_point = []
    for key, records in sorted(points.items()):
        graded = [r for r in records if r.final.correct is not None]
        per_point.append({
            "point": json.loads(key), "episodes": len(records),
            "accuracy": _share(sum(1 for r in graded if r.final.correct), len(graded)),
        })

    agents: dict[str, Counter] = defaultdict(Counter)
    requests = extending = 0
    for record in every_ok:
        for span in record.spans:
            if isinstance(span, TurnEvent):
                requests += span.requests
                extending += span.requests if span.extends else 0
    for record in ok:
        for span in record.spans:
            stats = agents[span.agent]
            stats["spans"] += 1
            stats["tokens"] += span.tokens
        for name in {s.agent for s in record.spans}:
            agents[name]["episodes"] += 1
            agents[name]["correct"] += 1 if record.final.correct else 0

    statuses: dict[str, list[str | None]] = defaultdict(list)
    for record in ended:
        if record.end is not None:
            statuses[record.end.status].append(record.end.error)
    prompt = sum(r.final.prompt_tokens for r in every_ok)
    cached = sum(r.final.cached_tokens for r in every_ok)
    ideal = sum(r.final.ideal_cached_tokens for r in every_ok)
    block_ideal = sum(r.final.block_ideal_cached_tokens for r in every_ok)
    summary = {
        "episodes": len(ended),
        "ok": len(ok),
        "failed": len(statuses["failed"]),
        "skipped": len(statuses["skipped"]),
        "skip_reasons": dict(Counter((reason or "")[:160] for reason in statuses["skipped"])),
        "unjudged": len(ok) - len(judged),
        "accuracy": _share(correct, len(judged)),
        "correct": correct,
        "per_point": per_point,
        "per_agent": {
            name: {**stats, "accuracy_when_present": _share(stats["correct"], stats["episodes"])}
            for name, stats in sorted(agents.items())
        },
        "end_reasons": dict(Counter(r.final.end_reason for r in ok)),
        "failures": dict(Counter((r.final.error or "")[:120] for r in ended if r.final.status == "failed")),
        "tokens": {
            "trace": sum(r.final.tokens for r in every_ok),
            "prompt": prompt,
            "cached_reported": cached,
            "cached_ideal": ideal,
            "reported_over_ideal": _share(cached, ideal),
            "cached_ideal_blocks": block_ideal,
            "reported_over_ideal_blocks": _share(cached, block_ideal),
            "requests": requests,
            "requests_extending_previous": _share(extending, requests),
        },
        "wall_s": {
            "episodes_total": round(sum(r.final.wall_s for r in every_ok), 3),
            "episode_mean": round(sum(r.final.wall_s for r in every_ok) / len(every_ok), 3) if every_ok else None,
        },
    }
    cost = judge_cost(every_ok)
    if cost:
        summary["judge"] = cost
    stages = _stages([r for r in finished if r.start.stage is not None])
    if stages:
        summary["stages"] = stages
    tables = twin_tests(ok)
    if tables:
        summary["twin_tests"] = tables
    if (forked := fork_cost(ok)) is not None:
        summary["forks"] = forked
    return summary


def judge_cost(records: list[EpisodeRecord]) -> dict[str, Any]:
    """What the judge's values cost, per method: boundaries valued, model requests, prompt and generated
    tokens (the answers method makes no requests)."""
    methods: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        for value in record.values:
            if (value.detail or {}).get("outcome"):
                continue
            stats = methods[value.method]
            stats["boundaries"] += 1
            for key in ("requests", "prompt_tokens", "tokens"):
                stats[key] += int((value.detail or {}).get(key, 0))
    return {method: dict(stats) for method, stats in sorted(methods.items())}


def _stages(records: list[EpisodeRecord]) -> dict[str, Any]:
    """Per stage and agent: solo episodes, failures and accuracy (the solve rate over all problems)."""
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for record in records:
        stats = counts[record.start.stage or ""][record.last_writer or "?"]  # a stage episode has one writer
        stats["episodes"] += 1
        stats["failed"] += record.final.status != "ok"
        stats["judged"] += record.final.correct is not None
        stats["correct"] += bool(record.final.correct)
    return {
        stage: {agent: {**stats, "accuracy": _share(stats["correct"], stats["judged"])}
                for agent, stats in sorted(agents.items())}
        for stage, agents in sorted(counts.items())
    }
