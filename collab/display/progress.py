"""Live progress of ``collab simulate``: a Rich display fed by run events (or log lines when quiet).

Tokens count as the engines generate them, not when a turn ends: whoever runs the engines hands
over, per engine, a live count of generated tokens (``generated``), read at each refresh. Engines
without one count at the end of each turn. Every tokens-per-second figure is the same measure
(tokens generated over the last ``WINDOW_S`` seconds); the top line's is the sum of the engines'.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
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

Counter = Callable[[], int | None]
"""A live count of the tokens an engine generated so far (``None``: the engine does not count)."""


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


@dataclass
class EngineTally:
    """What one engine did so far: turns, tokens (finished and running) and a window of samples for its speed."""

    turns: int = 0
    turn_tokens: int = 0
    """Tokens of finished turns."""
    prompt: int = 0
    cached: int = 0
    live: int | None = None
    """The engine's own count of generated tokens (running requests included), when it keeps one."""
    idle_base: int = 0
    """Generated tokens outside turns (judge rollouts), measured whenever no turn was running."""
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def tokens(self) -> int:
        """Tokens generated so far (running turns included when the engine counts them)."""
        return self.turn_tokens if self.live is None else max(self.live, self.turn_tokens)

    def running_tokens(self) -> int:
        """Tokens of the turns still running (0 for engines that count only finished turns)."""
        return 0 if self.live is None else max(0, self.live - self.turn_tokens - self.idle_base)

    def sample(self, now: float, live: int | None, requests: int) -> None:
        """Record the engine's live token count at ``now`` (``requests``: how many are running)."""
        if live is not None:
            self.live = max(live, self.live or 0)  # a closed engine counts nothing: keep what it counted
            if not requests:
                self.idle_base = max(0, live - self.turn_tokens)
        self.samples.append((now, self.tokens))
        while len(self.samples) > 1 and self.samples[1][0] <= now - WINDOW_S:
            self.samples.popleft()

    def rate(self, now: float, clock: float) -> float:
        """Tokens per second over the last ``WINDOW_S`` seconds (or since ``clock``, the start)."""
        start = now - WINDOW_S
        if start <= clock:
            return self.tokens / max(now - clock, 1e-9)
        before = next((tokens for t, tokens in reversed(self.samples) if t <= start), 0)
        return (self.tokens - before) / WINDOW_S


@dataclass
class RunStats:
    """Running figures of a run, from its events and the engines' live token counts."""

    total: int | None = None
    started: int = 0
    done: int = 0
    failed: int = 0
    judged: int = 0
    correct: int = 0
    prompt: int = 0
    cached: int = 0
    ideal: int = 0
    engines: dict[str, EngineTally] = field(default_factory=dict)
    clock: float = field(default_factory=time.perf_counter)

    def add(self, event: Event, now: float) -> None:
        """Count one event of the run."""
        if isinstance(event, RunStart):
            self.total = event.episodes
        elif isinstance(event, PhaseStart):
            self.total = (self.total or 0) + event.episodes
        elif isinstance(event, EpisodeStart):
            self.started += 1
        elif isinstance(event, TurnEvent):
            engine = self.engines.setdefault(event.engine, EngineTally())
            engine.turns += 1
            engine.turn_tokens += event.tokens
            engine.prompt += event.prompt_tokens
            engine.cached += event.cached_tokens
            engine.sample(now, None, 1)
        elif isinstance(event, EpisodeEnd):
            self.done += 1
            self.failed += event.status == "failed"
            self.prompt += event.prompt_tokens
            self.cached += event.cached_tokens
            self.ideal += event.ideal_cached_tokens
            if event.correct is not None:
                self.judged += 1
                self.correct += bool(event.correct)

    def sample(self, now: float, counters: Mapping[str, Counter], in_flight: Mapping[str, int]) -> None:
        """Read every engine's live token count."""
        for name, count in counters.items():
            self.engines.setdefault(name, EngineTally()).sample(now, count(), in_flight.get(name, 0))

    @property
    def running(self) -> int:
        """Episodes started and not yet ended."""
        return max(self.started - self.done, 0)

    @property
    def tokens(self) -> int:
        """Tokens generated by every engine so far."""
        return sum(engine.tokens for engine in self.engines.values())

    def rate(self, now: float) -> float:
        """Generated tokens per second over the last ``WINDOW_S`` seconds: the sum of the engines' rates."""
        return sum(engine.rate(now, self.clock) for engine in self.engines.values())

    def line(self, now: float) -> str:
        """A one-line progress report as of ``now``."""
        accuracy = f"{self.correct / self.judged:.1%} ({self.judged} judged)" if self.judged else "-"
        total = "?" if self.total is None else self.total
        running = sum(engine.running_tokens() for engine in self.engines.values())
        return (f"episodes {self.done}/{total} (failed {self.failed}, running {self.running})  "
                f"tokens {self.tokens} ({running} in running turns)  {self.rate(now):.1f} tok/s  "
                f"accuracy {accuracy}  "
                f"cache hit {_share(self.cached, self.prompt)} (ideal {_share(self.ideal, self.prompt)})")


class ProgressDisplay:
    """Episodes done and failed, tokens and tokens per second, cache-hit share, running accuracy, and
    per engine its requests in flight, turns, tokens (running turns included) and throughput.

    ``in_flight`` (engine -> requests in flight) and ``generated`` (engine -> live token count) are
    kept current by whoever sends the requests and read at each refresh. :meth:`notice` shows what
    the run is doing before its first episode (loading models) as one line. Quiet mode (or output
    that is no terminal) prints a log line every few seconds instead.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False,
                 in_flight: Mapping[str, int] | None = None, generated: Mapping[str, Counter] | None = None,
                 waiting: Mapping[str, int] | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet or not self.console.is_terminal
        self.in_flight: Mapping[str, int] = in_flight if in_flight is not None else {}
        self.generated: Mapping[str, Counter] = generated if generated is not None else {}
        self.waiting: Mapping[str, int] = waiting if waiting is not None else {}
        """Live: per engine, requests waiting for a server to come back (every server down)."""
        self.stats = RunStats()
        self.status = ""
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )
        self.task = self.progress.add_task("episodes", total=None)
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._logged_line = ""
        self._logged_done = -1

    def __enter__(self) -> ProgressDisplay:
        if self.quiet:
            self._ticker = threading.Thread(target=self._tick, name="collab-progress", daemon=True)
            self._ticker.start()
        else:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        failed = exc[0] is not None and not issubclass(exc[0], KeyboardInterrupt)
        if self._live is not None:
            self._live.transient = failed  # an error line stands alone
            self._live.__exit__(*exc)
        elif self.stats.started and self._logged_done != self.stats.done and not failed:
            self._log(time.perf_counter())

    def __call__(self, event: Event) -> None:
        """Take one event of the run."""
        with self._lock:
            self.stats.add(event, time.perf_counter())
        if isinstance(event, (RunStart, PhaseStart)):
            self.progress.update(self.task, total=self.stats.total)
        elif isinstance(event, EpisodeStart):
            self.status = ""
        elif isinstance(event, EpisodeEnd):
            self.progress.advance(self.task)
            if self._live is None and self.stats.done == self.stats.total:
                self._log(time.perf_counter())

    def notice(self, text: str) -> None:
        """One line about what the run is doing (loading models), shown until the first episode starts."""
        self.status = text
        if self._live is None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        """A line that stays above the display."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True, style="yellow")

    def _tick(self) -> None:
        while not self._stop.wait(LOG_EVERY_S):
            if self.stats.started:
                self._log(time.perf_counter())

    def _log(self, now: float) -> None:
        line = self.line(now)
        if line != self._logged_line:  # an idle run does not repeat itself
            self._logged_line, self._logged_done = line, self.stats.done
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def line(self, now: float | None = None) -> str:
        """A one-line progress report as of now."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            self.stats.sample(now, self.generated, self.in_flight)
            return self.stats.line(now) + self._outage()

    def _outage(self) -> str:
        waiting = {name: n for name, n in dict(self.waiting).items() if n > 0}
        if not waiting:
            return ""
        return "  servers down, waiting: " + ", ".join(f"{name} {n}" for name, n in sorted(waiting.items()))

    def engines(self, now: float) -> Table:
        """Per engine: requests in flight, turns, tokens, speed and cache hits."""
        table = Table(box=None, padding=(0, 2), pad_edge=False, header_style="dim")
        for name in ("engine", "in flight", "turns", "tokens", "in running turns", "tok/s", "cache hit"):
            table.add_column(name, justify="left" if name == "engine" else "right")
        in_flight = dict(self.in_flight)
        for name in sorted(set(self.stats.engines) | set(in_flight)):
            stats = self.stats.engines.get(name, EngineTally())
            table.add_row(Text(name), str(in_flight.get(name, "-")), str(stats.turns), str(stats.tokens),
                          str(stats.running_tokens()), f"{stats.rate(now, self.stats.clock):.1f}",
                          _share(stats.cached, stats.prompt))
        return table

    def __rich__(self) -> RenderableType:
        now = time.perf_counter()
        parts: list[RenderableType] = [self.progress, Text(self.line(now))]
        if self.status:
            parts.insert(0, Text(self.status, style="dim"))
        if self.stats.engines or self.in_flight:
            parts.append(self.engines(now))
        return Group(*parts)
