"""The line at a handoff boundary that shows its counterfactual forks."""

from __future__ import annotations

from rich.text import Text

from collab.display.style import clean
from collab.events import ForkEvent


def fork_line(forks: list[ForkEvent]) -> Text | None:
    """``⑂ had X continued: a 2/4 ✓ · same (b) 0/4 ✓``, after the span that closes the boundary."""
    if not forks:
        return None
    line = Text(f"⑂ {clean(forks[0].actual)} took over; had another continued:", "magenta")
    for fork in forks:
        judged = [c for c in fork.correct if c is not None]
        name = fork.alternative if fork.label == fork.alternative else f"{fork.label} ({fork.alternative})"
        rate = f"{sum(judged)}/{len(judged)}" if judged else "?"
        line.append(f" {clean(name)} {rate} ✓", "bold magenta" if judged and sum(judged) else "magenta")
        line.append(" ·" if fork is not forks[-1] else "", "magenta")
    return line
