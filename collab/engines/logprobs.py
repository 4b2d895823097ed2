"""Per-token log-probabilities as engines return them, and the uncertainty figures they give."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TOP = 20
"""Alternatives per position asked for when a request wants log-probabilities (entropy follows from them)."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated position: the chosen token's log-probability and the ``k`` best log-probabilities
    (the model's raw distribution, before temperature and truncation)."""

    logprob: float
    top: tuple[float, ...] = ()

    @property
    def entropy(self) -> float:
        """Entropy in nats of the top-k distribution, the rest of the mass counted as one outcome
        (a lower bound of the full entropy, exact when the top-k holds all the mass)."""
        return top_entropy(self.top)


def top_entropy(top: Sequence[float]) -> float:
    """Entropy (nats) of log-probabilities ``top``, with the missing mass ``1 - sum(p)`` as one more outcome."""
    probs = [math.exp(lp) for lp in top if lp > -math.inf]
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in [*probs, rest] if p > 0)
