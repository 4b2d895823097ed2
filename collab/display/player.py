"""The replay's state: which episode, how far its trace has grown, paused or not. Driven by ``tick``."""

from __future__ import annotations

from rich.console import RenderableType
from rich.panel import Panel
from rich.text import Text

from collab.display.context import RunContext
from collab.display.episode import Cursor, EpisodeView
from collab.display.tail import Scroll
from collab.log.select import Where, find, select
from collab.log.store import EpisodeRecord
from collab.log.tail import LogTail

HOLD_S = 2.0
"""Seconds a finished episode stays on screen before the next one starts."""
HINTS = "n/→ next · p/← previous · space pause · s skip · ↑↓ scroll · +/- speed · q quit"


class Player:
    """Plays the selected episodes of a run one after another, token by token at ``speed`` tokens/s.

    ``speed <= 0`` shows each episode whole at once. With ``follow`` the playlist also holds the
    episodes still running: their spans play as they are logged, and the player waits at the end of
    one until its next span or its end arrives. ``start`` names the episode (an id prefix) to begin with.
    """

    def __init__(self, log: LogTail, context: RunContext, wheres: list[Where], speed: float,
                 start: str | None = None, follow: bool = False, keys: bool = False) -> None:
        self.log = log
        self.context = context
        self.wheres = wheres
        self.speed = speed
        self.start = start
        self.follow = follow
        self.keys = keys
        self.playlist: list[EpisodeRecord] = []
        self.index = 0
        self.paused = False
        self.scroll = Scroll()
        self.cache: dict = {}
        self.cursor = Cursor(0)
        self._progress = self._held = 0.0
        self.refresh()

    # ------------------------------------------------------------------ playlist

    def refresh(self) -> None:
        """Take in newly finished episodes, keeping the current one on screen."""
        current = self.current
        self.playlist = select(self.log.records(in_flight=self.follow), self.wheres)
        ids = [r.id for r in self.playlist]
        if self.start is not None:
            found = find(self.playlist, self.start)
            if found is not None:
                self.start = None
                self._go(ids.index(found.id))
            return
        if current is not None and current.id in ids:
            self.index = ids.index(current.id)
        elif self.playlist:
            self._go(min(self.index, len(self.playlist) - 1))

    @property
    def current(self) -> EpisodeRecord | None:
        """The episode on screen (None once all are played)."""
        return self.playlist[self.index] if self.start is None and self.index < len(self.playlist) else None

    def _go(self, index: int) -> None:
        self.index = index
        self.cursor = Cursor(0)
        self.scroll = Scroll()
        self.cache = {}
        self._progress = self._held = 0.0
        if self.speed <= 0 and self.current is not None:
            self.cursor = Cursor(len(self.current.spans))

    # ------------------------------------------------------------------ controls

    def next(self) -> None:
        """Skip to the next episode."""
        if self.index + 1 < len(self.playlist):
            self._go(self.index + 1)

    def previous(self) -> None:
        """Go back to the previous episode."""
        if self.playlist:
            self._go(max(self.index - 1, 0))

    def skip(self) -> None:
        """Show the rest of the current episode at once."""
        if self.current is not None:
            self.cursor = Cursor(len(self.current.spans))

    def toggle_pause(self) -> None:
        """Pause or resume."""
        self.paused = not self.paused

    def faster(self, factor: float) -> None:
        """Multiply the speed by ``factor``."""
        if self.speed > 0:
            self.speed = max(self.speed * factor, 1.0)

    # ------------------------------------------------------------------ time

    @property
    def finished(self) -> bool:
        """The current episode is fully shown (a running one is not finished while it runs)."""
        record = self.current
        return record is None or (self.cursor.spans >= len(record.spans) and not self.waiting)

    @property
    def waiting(self) -> bool:
        """The current episode is running and everything it logged so far is shown."""
        record = self.current
        return (record is not None and record.end is None and self.follow and not self.log.ended
                and self.cursor.spans >= len(record.spans))

    @property
    def done(self) -> bool:
        """Nothing left to show: the last episode was shown and held, and no more will come."""
        return (self.finished and self._held >= HOLD_S and self.index + 1 >= len(self.playlist)
                and (not self.follow or self.log.ended))

    def tick(self, dt: float) -> None:
        """Advance the clock by ``dt`` seconds."""
        record = self.current
        if self.waiting:
            self._progress = 0.0  # the next span starts from its first token when it arrives
        if self.paused or record is None or self.waiting:
            return
        if self.speed <= 0:  # whole: a running episode's new spans show at once
            self.cursor = Cursor(len(record.spans))
        if self.finished:
            self._held += dt
            if self._held >= HOLD_S and self.index + 1 < len(self.playlist):
                self.next()
            return
        self._progress += dt * self.speed
        spans = record.spans
        while self.cursor.spans < len(spans) and self._progress >= max(spans[self.cursor.spans].tokens, 1):
            self._progress -= max(spans[self.cursor.spans].tokens, 1)
            self.cursor = Cursor(self.cursor.spans + 1)
        if self.cursor.spans < len(spans):
            span = spans[self.cursor.spans]
            self.cursor = Cursor(self.cursor.spans, int(len(span.text) * self._progress / max(span.tokens, 1)))

    # ------------------------------------------------------------------ drawing

    def status(self) -> Text:
        """The status line: position, speed, pause."""
        state = "⏸ paused" if self.paused else ("▶ " + (f"{self.speed:g} tok/s" if self.speed > 0 else "instant"))
        line = Text(state, "bold")
        if self.follow:
            line.append("  following" + (" (run ended)" if self.log.ended else ""), "dim")
        if self.keys:
            line.append("  " + HINTS, "dim")
        return line

    def view(self, height: int | None) -> RenderableType:
        """The screen for a terminal ``height`` lines high (None: unbounded)."""
        record = self.current
        if record is None:
            waiting = "waiting for episodes…" if self.follow else "no episode matches"
            if self.start is not None:
                waiting = f"waiting for episode {self.start}…"
            return Panel(Text.assemble((f"{self.context.name}: {waiting}\n", "bold"), self.status()), height=height)
        return EpisodeView(record, self.context, self.cursor, height=height, scroll=self.scroll,
                           position=(self.index, len(self.playlist)), status=self.status(), cache=self.cache)
