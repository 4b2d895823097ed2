"""The replay: episode rendering, the player's clock, filters, --follow, HTML export, a real terminal."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from runlog import demo_run, end_run, start_run, write_episode

from collab import cli
from collab.display import player as player_module
from collab.display.context import RunContext
from collab.display.episode import Cursor, EpisodeView
from collab.display.player import Player
from collab.display.replay import ReplayOptions, replay
from collab.display.show import episode_html
from collab.display.style import clean
from collab.events import EpisodeEnd, EpisodeStart
from collab.log.select import SelectError, Where, find, select
from collab.log.store import RunStore
from collab.log.tail import LogTail


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return demo_run(tmp_path / "demo")


def record_view(run: Path, episode: str, width: int = 120, **view: object) -> tuple[Console, str]:
    records = RunStore(run).episodes()
    context = RunContext.load(run, list(records.values()))
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(EpisodeView(records[episode], context, **view))
    return console, console.export_text()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


def segment_colours(run: Path, episode: str, needle: str) -> set[str]:
    records = RunStore(run).episodes()
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    view = EpisodeView(records[episode], RunContext.load(run, list(records.values())))
    return {s.style.color.name for s in console.render(view) if needle in s.text and s.style and s.style.color}


def test_authors_have_their_colour_and_a_legend(run: Path) -> None:
    _, text = record_view(run, "ep1")
    assert segment_colours(run, "ep1", "Let x be the number of apples") == {"cyan"}
    assert segment_colours(run, "ep1", "this looks off") == {"magenta"}
    assert segment_colours(run, "ep1", "Actually the answer must be 12") == {"yellow"}
    for label in ("┃ a", "┃ b", "┃ heckler", "■ a", "■ b", "■ heckler inj"):
        assert label in text
    assert "INJECTED" in text[text.index("┃ heckler"):]
    assert "from q9 (answer 12)" in text


def test_seeded_spans_are_marked(tmp_path: Path) -> None:
    store = start_run(tmp_path / "seeded")
    write_episode(store, "e", spans=(("guide", "seed", "A strong start.\n"), ("a", "turn", "Then 4.\n")))
    end_run(store)
    _, text = record_view(tmp_path / "seeded", "e")
    assert "SEEDED" in text.splitlines()[line_of(text, "┃ guide")]
    assert "SEEDED" not in text.splitlines()[line_of(text, "┃ a")]


def test_failed_episode_shows_its_error(tmp_path: Path) -> None:
    store = start_run(tmp_path / "failed")
    store.emit(EpisodeStart(episode_id="f", problem_id="p", sample=0, seed=0, gold="1"))
    store.emit(EpisodeEnd(episode_id="f", status="failed", error="engine small: [red]503[/red]"))
    end_run(store)
    _, text = record_view(tmp_path / "failed", "f")
    assert "FAILED  engine small: [red]503[/red]" in text and "no spans" in text


def test_model_and_problem_markup_is_shown_literally(run: Path) -> None:
    _, text = record_view(run, "ep1")
    assert "Wait, [bold red]this looks off[/bold red]; so x = 7?" in text
    assert "Two apples [dim]and[/dim] a pear" in text


def test_control_characters_are_made_visible(tmp_path: Path) -> None:
    store = start_run(tmp_path / "ctl")
    write_episode(store, "e", spans=(("a", "turn", "red \x1b[31mtext\x07 here\n"),))
    end_run(store)
    console, text = record_view(tmp_path / "ctl", "e")
    assert "red ␛[31mtext␇ here" in text
    raw = console.file.getvalue()
    assert "\x1b[31mtext" not in raw and "\x07" not in raw
    assert clean("a\x1b[0mb\tc\n\x9b") == "a␛[0mb\tc\n\ufffd"


def test_verdict_marks_sit_at_their_boundaries(run: Path) -> None:
    _, text = record_view(run, "ep1")
    derailed = line_of(text, "▼ DERAILED by b")
    assert line_of(text, "this looks off") < derailed < line_of(text, "┃ heckler")
    assert "0.60 → 0.10" in text.splitlines()[derailed]
    rescued = line_of(text, "▲ RESCUED by a")
    assert line_of(text, "The answer is $\\boxed{4}$") < rescued
    assert line_of(text, "value 0.50 before the first span") < line_of(text, "┃ a")
    # the timeline marks the second and fourth spans: ▼ under bar 2, ▲ under bar 4
    bars = line_of(text, "▅▅▂▁▇")
    marks = text.splitlines()[bars + 1]
    start = text.splitlines()[bars].index("▅▅▂▁▇")
    assert marks[start:start + 5] == "  ▼ ▲"


def test_footer_gives_the_final_answer_and_outcome(run: Path) -> None:
    _, good = record_view(run, "ep1")
    assert "final answer 4  ✓ correct" in good and "✓ recovered" in good
    _, bad = record_view(run, "ep2")
    assert "final answer 12  ✗ incorrect" in bad and "followed injection" in bad
    assert "gold 4" in bad and "tokens=96" in bad


def test_live_view_fills_the_height_and_shows_the_tail(tmp_path: Path) -> None:
    store = start_run(tmp_path / "long")
    spans = tuple(("a" if i % 2 else "b", "turn", f"Sentence number {i} of a long trace.\n" * 6) for i in range(20))
    write_episode(store, "e", spans=spans)
    end_run(store)
    _console, text = record_view(tmp_path / "long", "e", height=30, cursor=Cursor(19, 40))
    lines = text.splitlines()
    assert len(lines) == 30
    assert "Sentence number 19 of" in text and "Sentence number 0 of" not in text
    assert "writing span 20/20" in text and "▌" in text


def test_narrow_terminal_stacks_the_side_panel(run: Path) -> None:
    _, text = record_view(run, "ep1", width=80)
    assert line_of(text, "topology") > line_of(text, "RESCUED")


def test_player_animates_holds_and_advances(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(player_module, "HOLD_S", 1.0)
    log = LogTail(run)
    log.poll()
    player = Player(log, RunContext.load(run, log.records()), [], speed=10.0)
    assert [r.id for r in player.playlist] == ["ep1", "ep2", "ep3"]
    first = player.current.spans[0]
    player.tick(0.5)  # 5 of the first span's 12 tokens
    assert player.cursor == Cursor(0, int(len(first.text) * 5 / first.tokens))
    player.toggle_pause()
    player.tick(100)
    assert player.cursor.spans == 0
    player.toggle_pause()
    player.tick(1.0)
    assert player.cursor.spans == 1
    player.skip()
    assert player.finished and player.current.id == "ep1"
    player.tick(0.5)
    assert player.current.id == "ep1"
    player.tick(0.6)
    assert player.current.id == "ep2" and player.cursor == Cursor(0)
    player.previous()
    assert player.current.id == "ep1"
    player.next(), player.next(), player.next()
    assert player.current.id == "ep3" and not player.done
    player.skip()
    player.tick(1.1)
    assert player.done


def test_player_starts_at_an_episode_and_filters(run: Path) -> None:
    log = LogTail(run)
    log.poll()
    player = Player(log, RunContext.load(run, log.records()), [Where.parse("tokens=96")], speed=0, start="ep3")
    assert [r.id for r in player.playlist] == ["ep2", "ep3"]
    assert player.current.id == "ep3" and player.finished


def test_where_filters(run: Path) -> None:
    records = list(RunStore(run).episodes().values())

    def ids(*wheres: str) -> list[str]:
        return [r.id for r in select(records, [Where.parse(w) for w in wheres])]

    assert ids("correct=false") == ["ep2"]
    assert ids("verdict=derailed") == ["ep1", "ep2"]
    assert ids("verdict=rescued") == ["ep1"]
    assert ids("verdict!=derailed") == ["ep3"]
    assert ids("tokens=96", "correct=true") == ["ep3"]
    assert ids("graph.turns.a.until.tokens=32") == ["ep1"]
    assert ids("agent=heckler", "verdict=followed_injection") == ["ep2"]
    with pytest.raises(SelectError):
        Where.parse("correct")
    assert find(records, "ep2").id == "ep2" and find(records, "nope") is None


def test_ambiguous_episode_prefix(run: Path) -> None:
    with pytest.raises(SelectError, match="ambiguous"):
        find(list(RunStore(run).episodes().values()), "ep")


def test_cli_static_replay(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", str(run), "--where", "correct=false"]) == 0
    out = capsys.readouterr().out
    assert "episode ep2" in out and "episode ep1" not in out
    assert cli.main(["replay", str(run), "--episode", "ep3", "--static"]) == 0
    assert "episode ep3" in capsys.readouterr().out
    assert cli.main(["replay", str(run), "--where", "verdict=nothing"]) == 2
    assert "no episode matches" in capsys.readouterr().err
    assert cli.main(["replay", str(run.parent / "missing")]) == 2


class Signalling(io.StringIO):
    """A console file that tells a waiting writer when some text has been printed."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.needle in self.getvalue():
            self.seen.set()
        return written


def test_follow_shows_episodes_as_they_finish(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    store = start_run(folder, episodes=2)
    write_episode(store, "first")
    out = Signalling("episode first")

    def writer() -> None:
        assert out.seen.wait(10), "the first episode was not shown while the run was going"
        write_episode(store, "second", correct=False, answer="9")
        end_run(store)

    thread = threading.Thread(target=writer)
    thread.start()
    console = Console(file=out, width=120, record=True)
    started = time.monotonic()
    assert replay(folder, ReplayOptions(follow=True), console) == 0
    thread.join(5)
    text = out.getvalue()
    assert text.index("episode first") < text.index("episode second")
    assert "final answer 9  ✗ incorrect" in text
    assert time.monotonic() - started < 10


def test_follow_player_takes_in_new_episodes(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    store = start_run(folder, episodes=2)
    log = LogTail(folder)
    log.poll()
    player = Player(log, RunContext.load(folder, []), [], speed=0, follow=True)
    assert player.current is None and "waiting for episodes" in _plain(player.view(None))
    write_episode(store, "one")
    store._handle.flush()
    assert log.poll()
    player.refresh()
    assert player.current.id == "one"
    write_episode(store, "two")
    end_run(store)
    log.poll()
    player.refresh()
    assert [r.id for r in player.playlist] == ["one", "two"] and player.current.id == "one" and log.ended


def test_live_loop_plays_to_the_end(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(player_module, "HOLD_S", 0.05)
    out = io.StringIO()
    console = Console(file=out, width=120, height=30, force_terminal=True)
    assert replay(run, ReplayOptions(speed=0), console) == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "episode ep3 3/3" in shown and "final answer 12  ✗ incorrect" in shown


def test_show_html_is_self_contained(run: Path, tmp_path: Path) -> None:
    page = tmp_path / "ep1.html"
    assert cli.main(["show", str(run), "--episode", "ep1", "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<title>collab · demo · episode ep1</title>" in html
    assert "[bold red]this looks off[/bold red]" in html and "DERAILED" in html
    assert "<script src" not in html and "<link" not in html and not re.search(r"(src=|url\()[\"']?https?:", html)
    assert "renderMathInElement(" in html and html.count("data:font/woff2;base64,") == 20  # KaTeX, fonts and all
    records = RunStore(run).episodes()
    assert episode_html(records["ep2"], RunContext.load(run, list(records.values()))).count("<html>") == 1


def _plain(renderable: object) -> str:
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_real_terminal_with_tmux(run: Path) -> None:
    """The replay in a real 120x40 terminal: a private tmux server, read back with capture-pane."""
    tmux = ["tmux", "-L", f"collab-test-{os.getpid()}"]
    command = (f"env -u COLUMNS -u LINES {shlex.quote(sys.executable)} -m collab.cli replay "
               f"{shlex.quote(str(run))} --speed 0")
    subprocess.run([*tmux, "new-session", "-d", "-s", "replay", "-x", "120", "-y", "40", command], check=True,
                   cwd=Path(__file__).resolve().parent.parent)
    socket = subprocess.run([*tmux, "display", "-p", "#{socket_path}"], capture_output=True, text=True).stdout.strip()

    def screen(needle: str) -> str:
        deadline = time.monotonic() + 60  # a loaded machine starts Python slowly
        while True:
            shown = subprocess.run([*tmux, "capture-pane", "-p", "-t", "replay"], capture_output=True, text=True).stdout
            if needle in shown or time.monotonic() > deadline:
                return shown
            time.sleep(0.1)

    try:
        shown = screen("1/3")
        for panel in ("episode ep1", "trace", "topology", "agents", "judge value", "final answer 4", "q quit"):
            assert panel in shown, shown
        assert "[bold red]this looks off[/bold red]" in shown
        subprocess.run([*tmux, "send-keys", "-t", "replay", "n"], check=True)
        assert "episode ep2" in screen("2/3")
        subprocess.run([*tmux, "send-keys", "-t", "replay", "q"], check=True)
        deadline = time.monotonic() + 10
        while subprocess.run([*tmux, "has-session", "-t", "replay"], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "q did not quit the replay"
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        if socket:
            Path(socket).unlink(missing_ok=True)


def test_badges_never_take_an_author_colour() -> None:
    import math

    from rich.color import Color

    from collab.display.style import AGENT_COLOURS, EXPORT_THEME, VERDICTS

    def rgb(name: str) -> tuple[int, int, int]:
        colour = Color.parse(name).get_truecolor(EXPORT_THEME)
        return colour.red, colour.green, colour.blue

    for verdict, drawn in VERDICTS.items():
        for agent in AGENT_COLOURS:
            assert math.dist(rgb(drawn.colour), rgb(agent)) > 80, (verdict, agent)
    agents = [rgb(agent) for agent in AGENT_COLOURS[:6]]
    assert len(set(agents)) == 6  # the export theme draws the first six authors apart


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (runs the page's KaTeX)")
def test_the_page_typesets_mathematics(tmp_path: Path) -> None:
    from collab.display.math import with_math

    page = with_math("<html><head></head><body><pre>so $\\frac{1}{2}$ it is</pre></body></html>")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    (tmp_path / "katex.js").write_text(scripts[0], encoding="utf-8")
    code = "const k = require('./katex.js'); process.stdout.write(k.renderToString('\\\\frac{1}{2}'));"
    done = subprocess.run(["node", "-e", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'class="katex"' in done.stdout and "mfrac" in done.stdout
    assert "ignoredTags: ['script', 'noscript', 'style', 'textarea']" in page  # <pre> and <code> are typeset too


def test_follow_plays_running_episodes_as_their_spans_arrive(tmp_path: Path) -> None:
    from runlog import SPANS

    from collab.events import TurnEvent

    folder = tmp_path / "live"
    store = start_run(folder, episodes=1)
    store.emit(EpisodeStart(episode_id="run1", problem_id="p", sample=0, seed=1, gold="4", problem="find x"))
    agent, _, text = SPANS[0]
    store.emit(TurnEvent(episode_id="run1", index=0, turn=agent, agent=agent, kind="generated", engine="small",
                         text=text, tokens=12))
    store._handle.flush()
    log = LogTail(folder)
    log.poll()
    player = Player(log, RunContext.load(folder, []), [], speed=12, follow=True)
    assert player.current is not None and player.current.id == "run1" and player.current.end is None
    player.tick(0.5)  # half of the first span's 12 tokens
    assert player.cursor.spans == 0 and 0 < player.cursor.chars < len(text)
    shown = _plain(player.view(None))
    assert "writing span 1/1" in shown and text[: player.cursor.chars].strip() in shown
    player.tick(1.0)
    assert player.waiting and not player.finished and not player.done  # waits for the next turn
    player.tick(5.0)
    assert player.cursor.spans == 1 and player.current.id == "run1"
    agent, _, text = SPANS[1]
    store.emit(TurnEvent(episode_id="run1", index=1, turn=agent, agent=agent, kind="generated", engine="small",
                         text=text, tokens=12))
    store._handle.flush()
    log.poll()
    player.refresh()
    assert not player.waiting
    player.tick(0.5)
    assert player.cursor.spans == 1 and player.cursor.chars > 0  # the new span grows token by token
    store.emit(EpisodeEnd(episode_id="run1", status="ok", answer="4", correct=True))
    end_run(store)
    log.poll()
    player.refresh()
    player.tick(2.0)
    assert player.finished and player.current.end is not None
