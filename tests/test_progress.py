"""The simulate progress display: running figures from events, live and quiet output."""

from __future__ import annotations

import io
import time

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
    assert "in flight" in text and "in running turns" in text
    big = [line for line in text.splitlines() if line.startswith("big")][-1]
    assert big.split()[:4] == ["big", "3", "1", "100"] and big.split()[-1] == "80%"


def test_tokens_of_running_turns_count_before_any_turn_ends() -> None:
    generated = {"small": 0}
    in_flight = {"small": 2}
    stats = RunStats(clock=0.0)
    counters = {"small": lambda: generated["small"]}
    stats.add(RunStart(run_id="r", scenario="s", digest="d", episodes=1), now=0.0)
    generated["small"] = 40
    stats.sample(1.0, counters, in_flight)
    assert stats.tokens == 40 and stats.engines["small"].running_tokens() == 40
    assert stats.rate(2.0) == 20.0 and "tokens 40 (40 in running turns)  20.0 tok/s" in stats.line(2.0)
    turn = {"index": 0, "turn": "a", "agent": "a", "kind": "generated", "text": "x"}
    stats.add(TurnEvent(episode_id="e", engine="small", tokens=30, **turn), now=2.0)
    generated["small"] = 50
    stats.sample(3.0, counters, in_flight)
    assert stats.tokens == 50 and stats.engines["small"].running_tokens() == 20
    generated["small"] = 80  # a judge rollout, no turn running: not a running turn's tokens
    stats.sample(4.0, counters, {"small": 0})
    assert stats.engines["small"].running_tokens() == 0 and stats.tokens == 80
    stats.sample(20.0, counters, {"small": 0})
    assert stats.rate(20.0) == 0.0  # nothing in the last 10 s
    generated["small"] = 100
    stats.sample(21.0, counters, {"small": 1})
    assert stats.rate(21.0) == 2.0 == stats.engines["small"].rate(21.0, stats.clock)  # top line = sum of engines


def test_notice_is_one_line_until_the_first_episode() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=160, record=True)
    display = ProgressDisplay(console)
    display._live = object()  # type: ignore[assignment]  # as when live: the notice is part of the display
    display.notice("starting engine small (loading models)")
    assert console.export_text() == ""
    console.print(display)
    assert console.export_text().startswith("starting engine small (loading models)\nepisodes")
    display(EpisodeStart(episode_id="e1", problem_id="p", sample=0, seed=0))
    console.print(display)
    assert "starting engine" not in console.export_text()


def test_quiet_mode_logs_lines() -> None:
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, width=200))
    assert display.quiet  # not a terminal
    with display:
        for event in events():
            display(event)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("episodes 2/3 (failed 1") and "tokens 120 (0 in running turns)" in lines[-1]


def test_quiet_mode_logs_while_tokens_stream(monkeypatch) -> None:
    monkeypatch.setattr("collab.display.progress.LOG_EVERY_S", 0.01)
    out = io.StringIO()
    generated = {"small": 0}
    display = ProgressDisplay(Console(file=out, width=200), generated={"small": lambda: generated["small"]},
                              in_flight={"small": 1})
    with display:
        display.notice("starting engine small")
        display(EpisodeStart(episode_id="e1", problem_id="p", sample=0, seed=0))
        for count in (5, 10):
            generated["small"] = count
            while f"tokens {count} " not in out.getvalue():
                time.sleep(0.01)
    assert out.getvalue().startswith("starting engine small\nepisodes 0/? (failed 0, running 1)  tokens 5 (5 in")
