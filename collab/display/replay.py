"""``collab replay``: watch a run's episodes being written, live in a terminal or printed once."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.rule import Rule

from collab.display import keys
from collab.display.context import RunContext
from collab.display.episode import EpisodeView
from collab.display.player import Player
from collab.log.select import SelectError, Where, describe_fields, find, select
from collab.log.store import open_run
from collab.log.tail import LogTail

FPS = 20
POLL_S = 0.25
"""How often ``--follow`` looks for new events."""
SCROLL_LINES = 3

ACTIONS: dict[str, Callable[[Player], None]] = {
    "n": Player.next, "right": Player.next, "l": Player.next,
    "p": Player.previous, "left": Player.previous, "h": Player.previous,
    " ": Player.toggle_pause, "s": Player.skip,
    "up": lambda p: p.scroll.by(SCROLL_LINES), "k": lambda p: p.scroll.by(SCROLL_LINES),
    "down": lambda p: p.scroll.by(-SCROLL_LINES), "j": lambda p: p.scroll.by(-SCROLL_LINES),
    "+": lambda p: p.faster(2.0), "=": lambda p: p.faster(2.0), "-": lambda p: p.faster(0.5),
}
QUIT = {"q", "Q"}


@dataclass
class ReplayOptions:
    """How to replay: speed, follow a live run, static output, episode filters."""

    episode: str | None = None
    """Id (or id prefix) of the episode to show, or to start from in a live view."""
    speed: float = 150.0
    """Tokens per second; 0 shows each episode whole."""
    follow: bool = False
    static: bool = False
    where: list[str] = field(default_factory=list)


def run_folder(path: Path, follow: bool) -> Path:
    """The run folder for ``path`` (a run folder or its ``events.jsonl``)."""
    return open_run(path, live=follow).path


def replay(path: Path, options: ReplayOptions, console: Console) -> int:
    """Play (a terminal) or print (``--static``, or output to a file or pipe) the selected episodes."""
    folder = run_folder(path, options.follow)
    wheres = [Where.parse(text) for text in options.where]
    log = LogTail(folder)
    log.poll()
    context = RunContext.load(folder, log.records())
    if options.static or not console.is_terminal:
        return print_episodes(log, context, wheres, options, console)
    return play(log, context, wheres, options, console)


def print_episodes(log: LogTail, context: RunContext, wheres: list[Where], options: ReplayOptions,
                   console: Console) -> int:
    """Each selected episode once, whole; with ``follow``, also those that finish until the run ends."""
    printed: set[str] = set()
    while True:
        records = select(log.records(), wheres)
        if options.episode is not None:
            found = find(records, options.episode)
            records = [found] if found is not None else []
        context.learn(log.records())
        for position, record in enumerate(records):
            if record.id not in printed:
                if printed:
                    console.print(Rule(style="bright_black"))
                console.print(EpisodeView(record, context, position=(position, len(records))))
                printed.add(record.id)
        if not options.follow or log.ended or (options.episode is not None and printed):
            break
        try:
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            return 130
        log.poll()
    if not printed:
        raise SelectError(_nothing(options))
    return 0


def play(log: LogTail, context: RunContext, wheres: list[Where], options: ReplayOptions, console: Console) -> int:
    """The live view: animate episodes one after another; keys when stdin is a terminal."""
    player = Player(log, context, wheres, options.speed, start=options.episode, follow=options.follow,
                    keys=keys.available())
    if not options.follow and player.current is None:
        raise SelectError(_nothing(options))
    with ExitStack() as stack:
        reader = stack.enter_context(keys.Keys()) if player.keys else None
        live = stack.enter_context(Live(console=console, screen=True, auto_refresh=False))
        last = polled = time.monotonic()
        try:
            while not (player.done and reader is None):
                live.update(player.view(console.size.height), refresh=True)
                if reader is not None:
                    pressed = reader.read(1 / FPS)
                else:
                    time.sleep(1 / FPS)
                    pressed = []
                if QUIT.intersection(pressed):
                    break
                for key in pressed:
                    if key in ACTIONS:
                        ACTIONS[key](player)
                now = time.monotonic()
                if options.follow and now - polled >= POLL_S:
                    polled = now
                    if log.poll():
                        context.learn(log.records())
                        player.refresh()
                player.tick(now - last)
                last = now
        except KeyboardInterrupt:
            return 130
    return 0


def _nothing(options: ReplayOptions) -> str:
    if options.episode is not None:
        return f"no episode {options.episode!r}" + (" matches the filters" if options.where else " in this run")
    if options.where:
        return f"no episode matches {' '.join(options.where)} (filter keys: {describe_fields()})"
    return "no finished episodes in this run"
