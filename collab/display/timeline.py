"""The judge's value at each span boundary as a sparkline, with derail and rescue marks under it."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from collab.display.style import Palette, mark
from collab.events import JudgeValue, JudgeVerdict, SpanEvent
from collab.log.verdicts import marked_spans, values_by_boundary

BARS = "▁▂▃▄▅▆▇█"


def bar(value: float | None) -> str:
    """A value as a one-character bar."""
    if value is None:
        return "?"
    return BARS[round(min(max(value, 0.0), 1.0) * (len(BARS) - 1))]


class Timeline:
    """One column per boundary up to ``boundaries``; the newest columns are kept when space runs out.

    Each bar takes the colour of the span that led to its boundary (boundary 0, the bare prompt,
    stays white); ``▼``/``▲`` under a bar marks the span before it as derailing or rescuing.
    """

    def __init__(self, spans: list[SpanEvent], values: list[JudgeValue], verdicts: list[JudgeVerdict],
                 palette: Palette, boundaries: int) -> None:
        self.spans = spans
        self.values = values_by_boundary(values)
        self.verdicts = marked_spans(verdicts)
        self.palette = palette
        self.boundaries = boundaries

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown = [b for b in sorted(self.values) if b <= self.boundaries]
        if not shown:
            yield Text("no judge values", style="dim")
            return
        shown = shown[-max(options.max_width, 1):]
        bars, marks = Text(), Text()
        for boundary in shown:
            author = self.spans[boundary - 1].agent if 0 < boundary <= len(self.spans) else None
            bars.append(bar(self.values[boundary]), self.palette.style(author) if author else "white")
            verdict = self.verdicts.get(boundary - 1)
            if verdict is None:
                marks.append(" ")
            else:
                marks.append(mark(verdict.verdict).symbol, f"bold {mark(verdict.verdict).colour}")
        yield bars
        yield marks
        last = shown[-1]
        value = self.values[last]
        yield Text(f"boundary {last}: {'?' if value is None else f'{value:.2f}'}", style="dim")
