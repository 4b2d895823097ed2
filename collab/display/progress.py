"""Live progress of ``collab simulate``: a Rich display fed by run events (or log lines when quiet)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from collab.events import (
    EpisodeEnd,
    EpisodeStart,
    Event,
    PhaseStart,
    RunStart,
    TurnEvent,
)

WINDOW_S = 10.0
"""Tokens per second are measured over this last stretch of time."""
LOG_EVERY_S = 5.0


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


@dataclass
class EngineTally:
    """What one engine's finished turns added up to, as the progress display shows it."""

    turns: int = 0
    tokens: int = 0
    prompt: int = 0
    cached: int = 0
    latency_s: float = 0.0


@dataclass
class RunStats:
    """Running figures of a run, from its events; cache figures count finished episodes."""

    total: int | None = None
    started: int = 0
    done: int = 0
    failed: int = 0
    judged: int = 0
    correct: int = 0
    tokens: int = 0
    prompt: int = 0
    cached: int = 0
    ideal: int = 0
    engines: dict[str, EngineTally] = field(default_factory=dict)
    recent: deque[tuple[float, int]] = field(default_factory=deque)
    clock: float = field(default_factory=time.perf_counter)

    def add(self, event: Event, now: float) -> None:
        """Count one event seen at time ``now``."""
        if isinstance(event, RunStart):
            self.total = event.episodes
        elif isinstance(event, PhaseStart):
            self.total = (self.total or 0) + event.episodes
        elif isinstance(event, EpisodeStart):
            self.started += 1
        elif isinstance(event, TurnEvent):
            self.tokens += event.tokens
            engine = self.engines.setdefault(event.engine, EngineTally())
            engine.turns += 1
            engine.tokens += event.tokens
            engine.prompt += event.prompt_tokens
            engine.cached += event.cached_tokens
            engine.latency_s += event.latency_s
            self.recent.append((now, event.tokens))
        elif isinstance(event, EpisodeEnd):
            self.done += 1
            self.failed += event.status == "failed"
            self.prompt += event.prompt_tokens
            self.cached += event.cached_tokens
            self.ideal += event.ideal_cached_tokens
            if event.correct is not None:
                self.judged += 1
                self.correct += bool(event.correct)

    @property
    def running(self) -> int:
        """Episodes started and not yet ended."""
        return max(self.started - self.done, 0)

    def rate(self, now: float) -> float:
        """Generated tokens per second over the last ``WINDOW_S`` seconds (or since the start)."""
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        span = min(WINDOW_S, max(now - self.clock, 1e-9))
        return sum(tokens for _, tokens in list(self.recent)) / span

    def line(self, now: float) -> str:
        """A one-line progress report."""
        accuracy = f"{self.correct / self.judged:.1%} ({self.judged} judged)" if self.judged else "-"
        total = "?" if self.total is None else self.total
        return (f"episodes {self.done}/{total} (failed {self.failed}, running {self.running})  "
                f"accuracy {accuracy}  {self.rate(now):.1f} tok/s  "
                f"cache hit {_share(self.cached, self.prompt)} (ideal {_share(self.ideal, self.prompt)})")


class ProgressDisplay:
    """Episodes done and failed, tokens per second, cache-hit share, running accuracy, and per engine
    its turns, throughput, cache hits and (when ``in_flight`` is given) requests in flight.

    ``in_flight`` is a live mapping engine name -> requests in flight that whoever sends requests
    keeps up to date; it is read at each refresh. Quiet mode (or output that is no terminal) prints a
    log line every few seconds instead.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False,
                 in_flight: Mapping[str, int] | None = None, waiting: Mapping[str, int] | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet or not self.console.is_terminal
        self.in_flight: Mapping[str, int] = in_flight if in_flight is not None else {}
        self.waiting: Mapping[str, int] = waiting if waiting is not None else {}
        """Live: per engine, requests waiting for a server to come back (every server down)."""
        self.stats = RunStats()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )
        self.task = self.progress.add_task("episodes", total=None)
        self._live: Live | None = None
        self._logged = 0.0
        self._logged_done = -1

    def __enter__(self) -> ProgressDisplay:
        if not self.quiet:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        failed = exc[0] is not None and not issubclass(exc[0], KeyboardInterrupt)
        if self._live is not None:
            self._live.transient = failed  # an error line stands alone
            self._live.__exit__(*exc)
        elif self._logged_done != self.stats.done and not failed:
            self._log(time.perf_counter())

    def __call__(self, event: Event) -> None:
        """Take one event of the run."""
        now = time.perf_counter()
        self.stats.add(event, now)
        if isinstance(event, (RunStart, PhaseStart)):
            self.progress.update(self.task, total=self.stats.total)
        elif isinstance(event, EpisodeEnd):
            self.progress.advance(self.task)
            if self._live is None and (now - self._logged > LOG_EVERY_S or self.stats.done == self.stats.total):
                self._log(now)

    def _log(self, now: float) -> None:
        self._logged, self._logged_done = now, self.stats.done
        self.console.print(self.stats.line(now) + self._outage(), markup=False, highlight=False)

    def line(self) -> str:
        """A one-line progress report as of now."""
        return self.stats.line(time.perf_counter()) + self._outage()

    def _outage(self) -> str:
        waiting = {name: n for name, n in dict(self.waiting).items() if n > 0}
        if not waiting:
            return ""
        return "  servers down, waiting: " + ", ".join(f"{name} {n}" for name, n in sorted(waiting.items()))

    def engines(self) -> Table:
        """Per engine: requests in flight, turns, tokens, speed and cache hits."""
        table = Table(box=None, padding=(0, 2), pad_edge=False, header_style="dim")
        for name in ("engine", "in flight", "turns", "tokens", "tok/s per request", "cache hit"):
            table.add_column(name, justify="left" if name == "engine" else "right")
        in_flight = dict(self.in_flight)
        for name in sorted(set(self.stats.engines) | set(in_flight)):
            stats = self.stats.engines.get(name, EngineTally())
            speed = f"{stats.tokens / stats.latency_s:.1f}" if stats.latency_s else "-"
            table.add_row(Text(name), str(in_flight.get(name, "-")), str(stats.turns), str(stats.tokens), speed,
                          _share(stats.cached, stats.prompt))
        return table

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.progress, Text(self.line())]
        if self.stats.engines or self.in_flight:
            parts.append(self.engines())
        return Group(*parts)
