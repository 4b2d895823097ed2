"""What every kind of turn is: one step of the walk that may add a span to the trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from collab.trace import Span

if TYPE_CHECKING:
    from collab.sim.episode import Episode


@dataclass
class TurnOutcome:
    """The span a turn added (if any), what ended it, and whether the model ended the episode."""

    span: Span | None
    trigger: str
    eos: bool = False


class Turn(Protocol):
    """One turn of the graph; ``take`` extends the episode's trace and emits the turn's event."""

    async def take(self, episode: Episode, node: str) -> TurnOutcome:
        """Play the turn at graph node ``node``."""
        ...
