"""Colours, marks and text hygiene shared by the replay, ``show`` and reports."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.terminal_theme import TerminalTheme

EXPORT_THEME = TerminalTheme(
    (12, 12, 12), (217, 217, 217),
    [(26, 26, 26), (255, 85, 85), (80, 250, 123), (241, 250, 140), (98, 114, 255), (211, 108, 255), (139, 233, 253),
     (196, 197, 181)],
    [(98, 94, 76), (255, 119, 119), (138, 255, 128), (255, 255, 165), (154, 176, 255), (255, 146, 223),
     (164, 255, 255), (246, 246, 239)],
)
"""Colours of HTML exports: every ANSI colour distinct (common dark themes draw red and magenta alike)."""

AGENT_COLOURS = (
    "cyan", "magenta", "yellow", "blue", "bright_magenta", "bright_cyan", "orange3", "medium_purple",
    "turquoise2", "gold3", "deep_pink3", "steel_blue1",
)
"""Author colours, in order of appearance; red and green are kept for verdicts."""

@dataclass(frozen=True)
class Mark:
    """How a verdict is drawn: a symbol in a colour; ``badge`` is the loud form used in the trace."""

    symbol: str
    colour: str

    @property
    def badge(self) -> str:
        """The verdict as a short coloured badge."""
        return f"bold reverse {self.colour}"


VERDICTS: dict[str, Mark] = {
    "derailed": Mark("▼", "#ff2020"),
    "rescued": Mark("▲", "#20d040"),
    "recovered": Mark("✓", "#20d040"),
    "followed_injection": Mark("✗", "#ff2020"),
    "other_wrong": Mark("✗", "#ffffff"),
    "unjudged": Mark("?", "grey50"),
}
"""Span verdicts, then whole-episode outcomes: fixed colours, none of them an author's."""


def mark(verdict: str) -> Mark:
    """The mark of a verdict."""
    return VERDICTS.get(verdict, Mark("?", "white"))


KIND_BADGES = {"injected": ("INJECTED", "reverse"), "seeded": ("SEEDED", "reverse dim")}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text safe for a terminal: control characters (ANSI escapes included) become visible symbols.

    Rich markup in model text needs no escaping here because model text only ever goes into
    ``rich.text.Text`` objects, which never parse markup.
    """
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())) if ord(m.group()) < 0x20 else "\ufffd", text)


class Palette:
    """A stable colour per agent: agents listed first (scenario order) keep their place."""

    def __init__(self, agents: Iterable[str] = ()) -> None:
        self._colours: dict[str, str] = {}
        for agent in agents:
            self.colour(agent)

    def colour(self, agent: str) -> str:
        """The colour of an agent."""
        if agent not in self._colours:
            self._colours[agent] = AGENT_COLOURS[len(self._colours) % len(AGENT_COLOURS)]
        return self._colours[agent]

    def style(self, agent: str, **extra: Any) -> Style:
        """The style of an agent's text."""
        return Style(color=self.colour(agent), **extra)

    @property
    def agents(self) -> list[str]:
        """The agents in their colour order."""
        return list(self._colours)
