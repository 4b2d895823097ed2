"""The Python API: simulate (sync, async, inside a running loop), load_run, and the DataFrame views."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import collab
from collab.events import TurnEvent

ROOT = Path(__file__).resolve().parent.parent
RELAY = ROOT / "scenarios" / "relay.yaml"
INJECTED = ROOT / "scenarios" / "interjector.yaml"


def test_simulate_returns_the_typed_run(tmp_path: Path) -> None:
    run = collab.simulate(RELAY, dry_run=True, limit=2, samples=1, out=tmp_path, progress=False,
                          agents__b__temperature=0.25)
    assert run.path.parent == tmp_path and run.scenario["agents"]["b"]["temperature"] == 0.25
    assert run.summary["ok"] == 2 and len(run.episodes) == 2
    episode = run.episodes[0]
    assert episode.end is not None and episode.end.status == "ok"
    assert episode.turns and all(isinstance(turn, TurnEvent) for turn in episode.turns)
    assert [turn.agent for turn in episode.turns][:3] == ["a", "b", "c"]
    assert collab.load_run(run.path).episodes[0].id == episode.id


async def test_simulate_async_and_sync_inside_a_running_loop(tmp_path: Path) -> None:
    run = await collab.simulate_async(RELAY, dry_run=True, limit=1, samples=1, out=tmp_path / "a", progress=False)
    # as in Jupyter: the sync call inside a running loop
    again = collab.simulate(RELAY, dry_run=True, limit=1, samples=1, out=tmp_path / "b", progress=False)
    assert [e.id for e in run.episodes] == [e.id for e in again.episodes]


def test_dataframes_group_by_agent_problem_and_point(tmp_path: Path) -> None:
    run = collab.simulate(RELAY, dry_run=True, limit=2, samples=2, out=tmp_path, progress=False)
    episodes = collab.episodes_df(run)
    assert len(episodes) == 4 and set(episodes.status) == {"ok"}
    assert episodes.groupby("problem_id").size().tolist() == [2, 2]
    spans = collab.spans_df(run.path)  # a path works as well as a Run
    assert set(spans.agent) == {"a", "b", "c"} and (spans.kind == "generated").all()
    per_agent = spans.groupby("agent").tokens.sum()
    assert per_agent.sum() == episodes.tokens.sum() == sum(t.tokens for e in run.episodes for t in e.turns)
    verdicts = collab.verdicts_df([run, run])  # several runs concatenate
    assert len(verdicts) == 2 * sum(len(e.verdicts) for e in run.episodes) > 0
    assert set(verdicts.verdict) <= {"derailed", "rescued", "neutral"}


def test_sweep_points_and_injections_become_columns(tmp_path: Path) -> None:
    run = collab.simulate(INJECTED, dry_run=True, limit=1, samples=1, out=tmp_path, progress=False)
    spans = collab.spans_df(run)
    assert "injected" in set(spans.kind)
    sweep = run.scenario.get("sweep") or {}
    for key in sweep:
        assert key in collab.episodes_df(run).columns


def test_views_say_how_to_get_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = collab.simulate(RELAY, dry_run=True, limit=1, samples=1, out=tmp_path, progress=False)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'collab[pandas]'")):
        collab.episodes_df(run)


def test_readme_notebook_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 5
    swapped = code.replace('model="path/to/SmolLM2-135M-Instruct.Q4_1.gguf"', f"dry_run=True, out={str(tmp_path)!r}")
    assert swapped != code
    monkeypatch.chdir(ROOT)
    exec(compile(swapped, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "agent" in out and "correct" in out


def test_import_collab_stays_light() -> None:
    import subprocess

    code = "import sys, collab; assert 'torch' not in sys.modules and 'collab.sim' not in sys.modules, sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    with pytest.raises(AttributeError):
        collab.nothing_here  # noqa: B018
