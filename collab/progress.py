"""Live progress of ``collab simulate``: a Rich display fed by run events."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from collab.events import EpisodeEnd, Event, RunStart, TurnEvent


class ProgressDisplay:
    """Episodes done and failed, tokens per second, cache-hit share and running accuracy."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet or not self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )
        self.task = self.progress.add_task("episodes", total=None)
        self.done = self.failed = self.correct = self.judged = 0
        self.tokens = self.prompt = self.cached = 0
        self.in_flight: dict[str, int] = {}
        self.started = time.perf_counter()
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> ProgressDisplay:
        if not self.quiet:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStart):
            self.progress.update(self.task, total=event.episodes)
        elif isinstance(event, TurnEvent):
            self.tokens += event.tokens
            self.prompt += event.prompt_tokens
            self.cached += event.cached_tokens
        elif isinstance(event, EpisodeEnd):
            self.done += 1
            self.failed += event.status == "failed"
            if event.correct is not None:
                self.judged += 1
                self.correct += bool(event.correct)
            self.progress.advance(self.task)
            if self._live is not None:
                self._live.update(self._render())
            elif time.perf_counter() - self._last_line > 5 or self.done == self.progress.tasks[0].total:
                self._last_line = time.perf_counter()
                self.console.print(self.line())

    def line(self) -> str:
        total = self.progress.tasks[0].total
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        accuracy = f"{self.correct / self.judged:.1%}" if self.judged else "-"
        cache = f"{self.cached / self.prompt:.0%}" if self.prompt else "-"
        return (f"episodes {self.done}/{total if total is not None else '?'} (failed {self.failed})  "
                f"accuracy {accuracy}  {self.tokens / elapsed:.1f} tok/s  cache hit {cache}")

    def _render(self) -> RenderableType:
        table = Table.grid(padding=(0, 2))
        table.add_row(self.line())
        return Group(self.progress, table)
