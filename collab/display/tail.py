"""Stacked blocks that keep the last lines that fit: how a long trace scrolls."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment

Lines = list[list[Segment]]
Block = tuple[Hashable | None, Callable[[], RenderableType]]
"""A key (``None``: never cached) and a function drawing the block, called only when not cached."""


@dataclass
class Scroll:
    """How many lines above the tail the view sits; ``limit`` is learnt at each render."""

    back: int = 0
    limit: int = 0

    def by(self, lines: int) -> None:
        """Scroll by ``lines`` (negative: up)."""
        self.back = min(max(self.back + lines, 0), self.limit)


class Tail:
    """Render ``blocks`` one under another and keep the ``options.height`` lines ending ``scroll.back``
    lines before the end; without a height (printing, not a live view) every line is kept.

    A block given with a key is drawn and rendered once per width and kept in ``cache``: a live view
    redraws many times a second, and only the block being written changes.
    """

    def __init__(self, blocks: Sequence[Block], scroll: Scroll | None = None,
                 cache: dict[Hashable, Lines] | None = None) -> None:
        self.blocks = blocks
        self.scroll = scroll or Scroll()
        self.cache = {} if cache is None else cache

    def _lines(self, console: Console, options: ConsoleOptions) -> Lines:
        lines: Lines = []
        for key, draw in self.blocks:
            cached = self.cache.get((key, options.max_width)) if key is not None else None
            if cached is None:
                cached = console.render_lines(draw(), options, pad=False)
                if key is not None:
                    self.cache[(key, options.max_width)] = cached
            lines.extend(cached)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self._lines(console, options.update(height=None))
        if options.height is not None:
            self.scroll.limit = max(len(lines) - options.height, 0)
            self.scroll.back = min(self.scroll.back, self.scroll.limit)
            end = len(lines) - self.scroll.back
            lines = lines[max(end - options.height, 0):end]
        for line in lines:
            yield from line
            yield Segment.line()
