"""The numbers the report's tables and plots share: accuracy, intervals, sweep points, handoffs."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from collab.log.store import EpisodeRecord
from collab.log.verdicts import marked_spans
from collab.report.intervals import wilson
from collab.report.rundata import RunData
from collab.scenario.sweep import point_label


def pct(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` (``-`` when there is no whole)."""
    return f"{part / whole:.1%}" if whole else "-"


def accuracy(records: list[EpisodeRecord]) -> tuple[int, int]:
    """Correct and judged episodes."""
    judged = [r for r in records if r.end is not None and r.final.correct is not None]
    return sum(1 for r in judged if r.final.correct), len(judged)


def ci(correct: int, total: int) -> str:
    """The Wilson interval as text."""
    interval = wilson(correct, total)
    return "-" if interval is None else f"{interval[0]:.1%}–{interval[1]:.1%}"


def by_point(run: RunData) -> dict[str, list[EpisodeRecord]]:
    """The run's counted episodes per sweep point label."""
    points: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in sorted(run.ok, key=lambda r: point_order(r.start.point)):
        points[point_label(record.start.point)].append(record)
    return points


def handoffs(run: RunData) -> tuple[list[str], Counter, Counter, Counter, Counter]:
    """Agents in order, and per (from, to) pair of consecutive spans: count, correct, derails and
    rescues by the receiving span."""
    agents: dict[str, None] = {}
    count: Counter[tuple[str, str]] = Counter()
    correct: Counter[tuple[str, str]] = Counter()
    derails: Counter[tuple[str, str]] = Counter()
    rescues: Counter[tuple[str, str]] = Counter()
    for record in run.ok:
        marks = marked_spans(record.verdicts)
        for before, after in zip(record.spans, record.spans[1:], strict=False):
            pair = (before.agent, after.agent)
            agents.update({before.agent: None, after.agent: None})
            count[pair] += 1
            correct[pair] += bool(record.final.correct)
            verdict = marks.get(after.index)
            derails[pair] += verdict is not None and verdict.verdict == "derailed"
            rescues[pair] += verdict is not None and verdict.verdict == "rescued"
    return list(agents), count, correct, derails, rescues


def point_order(point: dict[str, Any]) -> list[tuple[str, int, float, str]]:
    """A sort key for sweep points: numbers by value (16 before 128), anything else by its text."""
    def one(value: Any) -> tuple[int, float, str]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return 0, float(value), ""
        return 1, 0.0, json.dumps(value, sort_keys=True, default=str)
    return [(key, *one(value)) for key, value in sorted(point.items())]
