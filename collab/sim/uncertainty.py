"""The writer's uncertainty during a turn: per-token figures, the crossing point, the event's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collab.engines.logprobs import TokenLogprob
from collab.scenario.schema import Uncertain

QUANTUM = 10
"""Recorded figures are in tenths (of a nat, of a log-probability)."""


@dataclass
class Profile:
    """Entropy and chosen log-probability of each token of a turn so far."""

    entropy: list[float] = field(default_factory=list)
    logprob: list[float] = field(default_factory=list)

    def extend(self, found: list[TokenLogprob]) -> None:
        """Add the next positions."""
        self.entropy += [lp.entropy for lp in found]
        self.logprob += [lp.logprob for lp in found]

    def keep(self, count: int) -> None:
        """Forget every position from ``count`` on (discarded tokens)."""
        del self.entropy[count:], self.logprob[count:]

    def crossing(self, rule: Uncertain, start: int = 0) -> tuple[int, float] | None:
        """The first position ``t >= start`` at which the mean over the window ending at ``t`` crosses the
        rule's threshold, and that mean; the turn keeps the tokens before ``t``."""
        first = max(start, rule.window - 1, rule.min_tokens)
        for t in range(first, len(self.entropy)):
            window = slice(t - rule.window + 1, t + 1)
            if rule.entropy is not None and (mean := _mean(self.entropy[window])) >= rule.entropy:
                return t, mean
            if rule.logprob is not None and (mean := _mean(self.logprob[window])) <= rule.logprob:
                return t, mean
        return None

    def record(self, rule: Uncertain, at: int | None, crossed: float | None, discarded: int) -> dict[str, Any]:
        """What a turn event keeps: per-token entropy and log-probability in tenths, summary figures, the
        rule, and where it fired (``at``: tokens kept before the crossing token, whose window mean was
        ``crossed``; ``discarded``: tokens generated after that point and thrown away)."""
        return {
            "entropy": [round(h * QUANTUM) for h in self.entropy],
            "logprob": [round(lp * QUANTUM) for lp in self.logprob],
            "mean_entropy": round(_mean(self.entropy), 3) if self.entropy else None,
            "max_entropy": round(max(self.entropy), 3) if self.entropy else None,
            "rule": rule.model_dump(exclude_none=True, include={"entropy", "logprob", "window"}),
            "at": at, "crossed": None if crossed is None else round(crossed, 3), "discarded": discarded,
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
