"""The simulate progress display: running figures from events, live and quiet output."""

from __future__ import annotations

import io

from rich.console import Console

from collab.display.progress import ProgressDisplay, RunStats
from collab.events import EpisodeEnd, EpisodeStart, RunStart, TurnEvent


def events() -> list:
    turn = {"index": 0, "turn": "a", "agent": "a", "kind": "generated", "text": "x", "latency_s": 0.5}
    return [
        RunStart(run_id="r", scenario="s", digest="d", episodes=3),
        EpisodeStart(episode_id="e1", problem_id="p", sample=0, seed=0),
        EpisodeStart(episode_id="e2", problem_id="p", sample=1, seed=0),
        TurnEvent(episode_id="e1", engine="big", tokens=100, prompt_tokens=50, cached_tokens=40, **turn),
        TurnEvent(episode_id="e2", engine="small", tokens=20, prompt_tokens=50, **turn),
        EpisodeEnd(episode_id="e1", status="ok", correct=True, prompt_tokens=100, cached_tokens=40,
                   ideal_cached_tokens=80),
        EpisodeEnd(episode_id="e2", status="failed", error="boom"),
    ]


def test_run_stats_count_episodes_tokens_cache_and_accuracy() -> None:
    stats = RunStats(clock=0.0)
    for event in events():
        stats.add(event, now=1.0)
    assert (stats.total, stats.started, stats.done, stats.failed, stats.running) == (3, 2, 2, 1, 0)
    assert stats.engines["big"].tokens == 100 and stats.engines["small"].turns == 1
    assert stats.rate(now=2.0) == 60.0  # 120 tokens over the 2 s since the start
    assert stats.rate(now=100.0) == 0.0  # nothing in the last 10 s
    line = stats.line(now=2.0)
    assert "episodes 2/3 (failed 1, running 0)" in line
    assert "accuracy 100.0% (1 judged)" in line and "cache hit 40% (ideal 80%)" in line


def test_live_display_shows_engines_and_requests_in_flight() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    in_flight = {"big": 3}
    display = ProgressDisplay(console, in_flight=in_flight)
    assert not display.quiet
    with display:
        for event in events():
            display(event)
    console.print(display)
    text = console.export_text()
    assert "in flight" in text and "tok/s per request" in text
    big = [line for line in text.splitlines() if line.startswith("big")][-1]
    assert big.split()[:4] == ["big", "3", "1", "100"] and big.split()[-1] == "80%"


def test_quiet_mode_logs_lines() -> None:
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, width=200))
    assert display.quiet  # not a terminal
    with display:
        for event in events():
            display(event)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("episodes 1/3") and lines[-1].startswith("episodes 2/3 (failed 1")
