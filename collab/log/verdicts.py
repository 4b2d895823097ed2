"""Reading an episode's judge events: the latest value per boundary, marks per span, the outcome."""

from __future__ import annotations

from collab.events import JudgeValue, JudgeVerdict

MARKS = ("derailed", "rescued")
"""Span verdicts worth a mark; ``neutral`` and ``unjudged`` spans get none."""


def values_by_boundary(values: list[JudgeValue]) -> dict[int, float | None]:
    """The latest value per boundary (a re-judged run appends newer ones)."""
    return {v.boundary: v.value for v in sorted(values, key=lambda v: v.t)}


def marked_spans(verdicts: list[JudgeVerdict]) -> dict[int, JudgeVerdict]:
    """Per span index, its latest verdict when that is a derail or a rescue."""
    latest = {v.span: v for v in sorted(verdicts, key=lambda v: v.t) if v.span is not None}
    return {span: v for span, v in latest.items() if v.verdict in MARKS}


def outcome(verdicts: list[JudgeVerdict]) -> JudgeVerdict | None:
    """The latest whole-episode verdict (recovered, followed_injection, other_wrong, unjudged)."""
    found = [v for v in sorted(verdicts, key=lambda v: v.t) if v.span is None]
    return found[-1] if found else None
