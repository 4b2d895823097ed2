"""One episode as a renderable: header, the growing trace, a side panel, and the outcome."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from functools import partial

from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from collab.display.context import RunContext
from collab.display.forks import fork_line
from collab.display.graph import TopologyView
from collab.display.style import KIND_BADGES, clean, mark
from collab.display.tail import Block, Lines, Scroll, Tail
from collab.display.timeline import Timeline
from collab.display.uncertainty import uncertainty_strip
from collab.events import JudgeVerdict, SpanEvent
from collab.log.store import EpisodeRecord
from collab.log.verdicts import marked_spans, outcome, values_by_boundary
from collab.scenario.sweep import point_label

SIDE_WIDTH = 40
WIDE = 100
"""Below this many columns the side panels go in a row under the trace."""
HEADER_LINES = 4
"""Problem lines kept in the header of a live view (the facts line and borders come on top)."""


@dataclass(frozen=True)
class Cursor:
    """How much of the trace is shown: ``spans`` whole spans, then ``chars`` characters of the next."""

    spans: int
    chars: int = 0


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def _value(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


class TraceView:
    """The spans shown so far, each under a label in its author's colour, with boundary marks.

    Each whole span is one block keyed by the judge events it shows, so a live view renders it once.
    """

    def __init__(self, record: EpisodeRecord, context: RunContext, cursor: Cursor) -> None:
        self.record = record
        self.context = context
        self.cursor = cursor

    def blocks(self) -> list[Block]:
        """The trace as blocks of spans, each with its author and verdict marks."""
        record = self.record
        values = values_by_boundary(record.values)
        verdicts = marked_spans(record.verdicts)
        judged = (len(record.values), len(record.verdicts))
        blocks: list[Block] = []
        if 0 in values:
            blocks.append((None, lambda: Text(f"value {_value(values[0])} before the first span", "dim")))
        shown = record.spans[: self.cursor.spans + (1 if self.cursor.chars > 0 else 0)]
        for position, span in enumerate(shown):
            if position == self.cursor.spans:
                blocks.append((None, partial(self._span, span, self.cursor.chars)))
            else:
                block = partial(self._span, span, None, values, verdicts.get(span.index))
                blocks.append(((record.id, position, judged), block))
        if not record.spans:
            blocks.append((None, lambda: Text("no spans", "dim")))
        return blocks

    def _span(self, span: SpanEvent, chars: int | None, values: dict[int, float | None] | None = None,
              verdict: JudgeVerdict | None = None) -> Text:
        """A span under its label; ``chars`` cuts a span being written, else its boundary line follows."""
        style = self.context.palette.style(span.agent, italic=span.kind != "generated")
        text = self._label(span)
        if chars is not None:
            text.append(clean(span.text[:chars]), style)
            text.append("▌", self.context.palette.style(span.agent, blink=True))
            return text
        text.append(clean(span.text), style)
        text.rstrip()
        strip = uncertainty_strip(getattr(span, "uncertainty", None))
        if strip is not None:
            text.append("\n").append_text(strip)
        return text.append_text(self._boundary(span, values or {}, verdict))

    def _label(self, span: SpanEvent) -> Text:
        style = self.context.palette.style(span.agent, bold=True)
        label = Text("┃ ", style)
        label.append(clean(span.agent), style)
        if span.turn != span.agent:
            label.append(f" · {clean(span.turn)}", style)
        badge = KIND_BADGES.get(span.kind)
        if badge is not None:
            label.append(" ")
            label.append(f" {badge[0]} ", badge[1])
        label.append(f" {span.tokens} tok", "dim")
        source = span.meta.get("source_problem_id")
        if source is not None:
            label.append(f" from {clean(str(source))}", "dim")
            if span.meta.get("source_answer") is not None:
                label.append(f" (answer {clean(str(span.meta['source_answer']))})", "dim")
        label.append("\n")
        return label

    def _boundary(self, span: SpanEvent, values: dict[int, float | None], verdict: JudgeVerdict | None) -> Text:
        """The line after a span: the value at the boundary it closes, and its derail or rescue badge."""
        line = Text()
        if span.index + 1 in values:
            line.append(f"└ value {_value(values[span.index + 1])}", "dim")
        if verdict is not None:
            drawn = mark(verdict.verdict)
            who = verdict.agent or span.agent
            line.append(" " if line else "")
            line.append(f" {drawn.symbol} {verdict.verdict.upper()} by {clean(who)} ", drawn.badge)
            if verdict.before is not None or verdict.after is not None:
                line.append(f" {_value(verdict.before)} → {_value(verdict.after)}", f"bold {drawn.colour}")
        forks = fork_line([f for f in self.record.forks if f.boundary == span.index + 1])
        if forks is not None:
            line.append("\n" if line else "").append_text(forks)
        return Text("\n").append_text(line) if line else line


class EpisodeView:
    """The whole screen for one episode.

    With ``height`` (a live view) it fills exactly that many lines and the trace shows its tail;
    without, it prints at its natural height (``--static``, ``show --html``).
    """

    def __init__(self, record: EpisodeRecord, context: RunContext, cursor: Cursor | None = None,
                 height: int | None = None, scroll: Scroll | None = None, position: tuple[int, int] | None = None,
                 status: Text | None = None, cache: dict[Hashable, Lines] | None = None) -> None:
        self.record = record
        self.context = context
        self.cursor = cursor or Cursor(len(record.spans))
        self.height = height
        self.scroll = scroll or Scroll()
        self.position = position
        self.status = status
        self.cache = cache

    @property
    def finished(self) -> bool:
        """Whether the episode has ended."""
        return self.cursor.spans >= len(self.record.spans)

    # ------------------------------------------------------------------ parts

    def header(self) -> Panel:
        """The header: problem, point and outcome."""
        start = self.record.start
        title = Text(f" episode {start.episode_id[:12]} ", "bold")
        if self.position is not None:
            title.append(f"{self.position[0] + 1}/{self.position[1]} ", "dim")
        facts = Text()
        facts.append("problem ", "dim")
        facts.append(clean(start.problem_id), "bold")
        facts.append(f"  sample {start.sample}", "dim")
        if start.stage is not None:
            facts.append(f"  stage {clean(start.stage)}", "dim")
        if start.point:
            facts.append(f"  {clean(point_label(start.point))}", "dim")
        facts.append("  gold ", "dim")
        facts.append(clean(str(start.gold)) if start.gold is not None else "-", "bold green")
        problem = Text(clean(start.problem.strip()) or "(no problem text)")
        return Panel(Group(facts, problem), title=title, title_align="left", border_style="bright_black")

    def trace(self) -> Panel:
        """The trace panel."""
        return Panel(Tail(TraceView(self.record, self.context, self.cursor).blocks(), self.scroll, self.cache),
                     title=" trace ", title_align="left", border_style="bright_black")

    def side(self, wide: bool) -> RenderableType:
        """Topology, agents and judge value: stacked beside a wide trace, in a row under a narrow one."""
        writing = self.record.spans[: self.cursor.spans + (1 if self.cursor.chars else 0)]
        current = writing[-1].turn if writing else None
        panels = [
            Panel(TopologyView(self.context.topology, self.context.palette, current, Counter(s.turn for s in writing)),
                  title=" topology ", title_align="left", border_style="bright_black"),
            Panel(self._agents(self.record.spans[: self.cursor.spans]), title=" agents ", title_align="left",
                  border_style="bright_black"),
            Panel(Timeline(self.record.spans, self.record.values, self.record.verdicts, self.context.palette,
                           self.cursor.spans), title=" judge value ", title_align="left", border_style="bright_black"),
        ]
        if wide:
            return Group(*panels)
        row = Table.grid(expand=True)
        for ratio in (1, 2, 1):
            row.add_column(ratio=ratio)
        row.add_row(*panels)
        return row

    def _agents(self, spans: list[SpanEvent]) -> Table:
        """Legend and per-agent figures: spans, tokens, and the share of prompt tokens served from cache."""
        table = Table(box=None, pad_edge=False, padding=(0, 1), expand=True)
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("agent", "left"), ("spans", "right"), ("tok", "right"), ("cache", "right"))
        for name, justify in columns:
            table.add_column(name, justify=justify, header_style="dim")
        count: Counter[str] = Counter()
        tokens: Counter[str] = Counter()
        prompt: Counter[str] = Counter()
        cached: Counter[str] = Counter()
        for span in spans:
            count[span.agent] += 1
            tokens[span.agent] += span.tokens
            prompt[span.agent] += getattr(span, "prompt_tokens", 0)
            cached[span.agent] += getattr(span, "cached_tokens", 0)
        palette = self.context.palette
        for agent in palette.agents + [a for a in count if a not in palette.agents]:
            label = Text("■ ", palette.style(agent))
            label.append(clean(agent), palette.style(agent, bold=True))
            if agent in self.context.injectors:
                label.append(" inj", "dim")
            table.add_row(label, str(count[agent]), str(tokens[agent]), _share(cached[agent], prompt[agent]))
        table.caption = f"prompt cached {_share(sum(cached.values()), sum(prompt.values()))}"
        end = self.record.end
        if end is not None and end.prompt_tokens and self.finished:
            table.caption += f" (ideal {_share(end.ideal_cached_tokens, end.prompt_tokens)})"
        table.caption_style = "dim"
        return table

    def footer(self) -> Panel:
        """The footer: per-agent spans, tokens and cache use."""
        end = self.record.end
        line = Text()
        if not self.finished:
            span = self.record.spans[self.cursor.spans]
            line.append(f"writing span {self.cursor.spans + 1}/{len(self.record.spans)}: ", "dim")
            line.append(clean(span.agent), self.context.palette.style(span.agent, bold=True))
        elif end is None:
            line.append("running…", "dim")
        elif end.status == "failed":
            line.append(" FAILED ", "bold reverse red")
            line.append(f" {clean(end.error or '')}", "red")
        else:
            line.append("final answer ", "dim")
            line.append(clean(end.answer) if end.answer is not None else "(none)", "bold")
            if end.correct is None:
                line.append("  ? unjudged", "yellow")
            elif end.correct:
                line.append("  ✓ correct", "bold green")
            else:
                line.append("  ✗ incorrect", "bold red")
            line.append(f"  · {end.end_reason} · {end.tokens} tokens · {len(self.record.spans)} spans", "dim")
            verdict = outcome(self.record.verdicts)
            if verdict is not None:
                drawn = mark(verdict.verdict)
                line.append("  ")
                line.append(f" {drawn.symbol} {verdict.verdict.replace('_', ' ')} ", drawn.badge)
        parts: list[RenderableType] = [line]
        if self.status is not None:
            parts.append(self.status)
        return Panel(Group(*parts), border_style="bright_black")

    # ------------------------------------------------------------------ layout

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        wide = width >= WIDE
        side = self.side(wide)
        if self.height is None:
            body = Table.grid(expand=True)
            if wide:
                body.add_column(ratio=1)
                body.add_column(width=SIDE_WIDTH)
                body.add_row(self.trace(), side)
            else:
                body.add_column(ratio=1)
                body.add_row(self.trace())
                body.add_row(side)
            yield Group(self.header(), body, self.footer())
            return
        header, footer = self.header(), self.footer()
        measure = options.update(width=width, height=None)
        header.height = min(len(console.render_lines(header, measure, pad=False)), HEADER_LINES + 3)
        layout = Layout()
        layout.split_column(
            Layout(header, size=header.height),
            Layout(name="body"),
            Layout(footer, size=len(console.render_lines(footer, measure, pad=False))),
        )
        if wide:
            layout["body"].split_row(Layout(self.trace()), Layout(side, size=SIDE_WIDTH))
        else:
            side_lines = len(console.render_lines(side, measure, pad=False))
            layout["body"].split_column(Layout(self.trace()), Layout(side, size=min(side_lines, self.height // 3)))
        yield from console.render(layout, options.update(height=self.height))
