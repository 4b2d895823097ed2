"""The report's tables for one run, one builder per section."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from collab.events import TurnEvent
from collab.log.verdicts import marked_spans, outcome
from collab.report.figures import accuracy, by_point, ci, handoffs, pct
from collab.report.forks import fork_table
from collab.report.paper_tables import paper_tables
from collab.report.rundata import RunData
from collab.report.section import Section
from collab.report.shares import token_shares


def overview(run: RunData) -> Section:
    """Episodes, accuracy, tokens, cache use and wall time."""
    s = run.summary
    tokens = s["tokens"]
    correct, total = accuracy(run.ok)
    rows = [
        ["episodes", f"{s['episodes']} ({s['ok']} ok, {s['failed']} failed, {s.get('skipped', 0)} skipped, "
                     f"{s['unjudged']} unjudged)"],
        ["accuracy", f"{pct(correct, total)} of {total}"],
        ["95% interval", ci(correct, total)],
        ["trace tokens", str(tokens["trace"])],
        ["requests", str(tokens["requests"])],
        ["requests extending the previous", "-" if tokens["requests_extending_previous"] is None
         else f"{tokens['requests_extending_previous']:.1%}"],
        ["prompt tokens cached", f"{pct(tokens['cached_reported'], tokens['prompt'])} reported, "
                                 f"{pct(tokens['cached_ideal'], tokens['prompt'])} ideal"],
        ["wall time", f"{run.wall_s:.1f} s" if run.wall_s else "-"],
        ["trace tokens per second", f"{tokens['trace'] / run.wall_s:.1f}" if run.wall_s else "-"],
    ]
    return Section("Overview", ["metric", "value"], rows)


def per_point(run: RunData) -> Section | None:
    """Accuracy per sweep point (None without a sweep)."""
    points = by_point(run)
    if list(points) == ["-"]:
        return None
    rows = []
    for label, records in points.items():
        correct, total = accuracy(records)
        rows.append([label, str(len(records)), pct(correct, total), ci(correct, total)])
    return Section("Accuracy per sweep point", ["point", "episodes", "accuracy", "95% interval"], rows)


def per_agent(run: RunData) -> Section:
    """Spans, tokens, presence accuracy and marked verdicts per agent."""
    derailed: Counter[str] = Counter()
    rescued: Counter[str] = Counter()
    for record in run.ok:
        for span, verdict in marked_spans(record.verdicts).items():
            agent = verdict.agent or record.spans[span].agent
            (derailed if verdict.verdict == "derailed" else rescued)[agent] += 1
    rows = []
    for name, stats in run.summary["per_agent"].items():
        accuracy = stats.get("accuracy_when_present")
        rows.append([name, str(stats["spans"]), str(stats["tokens"]), str(stats["episodes"]),
                     "-" if accuracy is None else f"{accuracy:.1%}", str(derailed[name]), str(rescued[name])])
    return Section("Per agent", ["agent", "spans", "tokens", "episodes", "accuracy when present", "derailed",
                                 "rescued"], rows, note="derailed / rescued: spans the judge marked")


def outcomes(run: RunData) -> Section | None:
    """Injection episodes: recovered, followed the injection, or wrong otherwise, per sweep point."""
    kinds = ("recovered", "followed_injection", "other_wrong", "unjudged")
    rows = []
    for label, records in by_point(run).items():
        found = Counter(v.verdict for r in records if (v := outcome(r.verdicts)) is not None)
        total = sum(found.values())
        if total:
            rows.append([label, str(total), *(f"{found[k]} ({pct(found[k], total)})" for k in kinds)])
    if not rows:
        return None
    return Section("Injection outcomes", ["point", "episodes", "recovered", "followed injection", "other wrong",
                                          "unjudged"], rows)


def handoff_matrix(run: RunData) -> Section | None:
    """Handoffs between agents: counts, accuracy, derails and rescues."""
    agents, count, correct, derails, rescues = handoffs(run)
    if not count:
        return None
    rows = []
    for source in agents:
        row = [source]
        for target in agents:
            pair = (source, target)
            cell = f"{count[pair]} · {pct(correct[pair], count[pair])}" if count[pair] else ""
            cell += f" ▼{derails[pair]}" if derails[pair] else ""
            cell += f" ▲{rescues[pair]}" if rescues[pair] else ""
            row.append(cell)
        rows.append(row)
    return Section("Handoffs: row → column", ["from \\ to", *agents], rows,
                   note="cell: handoffs · accuracy of their episodes; ▼ derails / ▲ rescues by the receiving span")


def engines(run: RunData) -> Section | None:
    """Per engine: turns, requests, tokens, cache hits and speed."""
    stats: dict[str, Counter] = defaultdict(Counter)
    latency: dict[str, float] = defaultdict(float)
    for record in run.ok:
        for span in record.spans:
            if isinstance(span, TurnEvent):
                e = stats[span.engine]
                e["turns"] += 1
                e["requests"] += span.requests
                e["tokens"] += span.tokens
                e["prompt"] += span.prompt_tokens
                e["cached"] += span.cached_tokens
                latency[span.engine] += span.latency_s
    if not stats:
        return None
    rows = [[name, str(e["turns"]), str(e["requests"]), str(e["tokens"]), pct(e["cached"], e["prompt"]),
             f"{latency[name]:.1f}", f"{e['tokens'] / latency[name]:.1f}" if latency[name] else "-"]
            for name, e in sorted(stats.items())]
    return Section("Engines: cache and throughput", ["engine", "turns", "requests", "generated tokens",
                                                      "prompt cached", "request time s", "tokens/s per request"], rows)


def stages(run: RunData) -> Section | None:
    """Solo stage episodes (which build pools or pick problems), per stage and agent."""
    rows = [[stage, agent, str(stats["episodes"]), str(stats["failed"]),
             "-" if stats["accuracy"] is None else f"{stats['accuracy']:.1%}"]
            for stage, agents in run.summary.get("stages", {}).items() for agent, stats in agents.items()]
    return Section("Stages", ["stage", "agent", "episodes", "failed", "accuracy"], rows, keys=2) if rows else None


SECTIONS: list[Callable[[RunData], Section | None]] = [
    overview, per_point, per_agent, outcomes, handoff_matrix, engines, stages, lambda run: token_shares(run.ok),
    lambda run: fork_table(run.ok),
]

PAPER_TABLES: list[Callable[[dict[str, Any]], list[Section]]] = [paper_tables]
"""Paper-style twin-test tables (recoverability, guidability), built from ``summary.json`` keys.

Register a builder here: it takes the run's summary and returns its Sections (none when the keys it
needs are absent). They print after the sections above, and side by side under ``--compare``.
"""


def sections(run: RunData) -> list[Section | None]:
    """Every section builder's table, in order; None where a builder has nothing for this run."""
    return [section(run) for section in SECTIONS] + [t for build in PAPER_TABLES for t in build(run.summary)]
