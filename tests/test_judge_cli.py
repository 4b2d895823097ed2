"""``collab judge``: human output, progress, and the earlier judgement kept unless --replace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collab import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path: Path) -> Path:
    scenario = str(ROOT / "scenarios" / "interjector.yaml")
    assert cli.main(["simulate", scenario, "--dry-run", "--limit", "1", "--samples", "1", "--quiet",
                     "--out", str(tmp_path)]) == 0
    return next(tmp_path.iterdir())


def test_judge_keeps_the_earlier_judgement_unless_asked(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = (run / "events.jsonl").read_bytes()
    capsys.readouterr()
    assert cli.main(["judge", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("judged ") and "per agent" in out and "{" not in out
    assert "kept the run's earlier judgement" in out and "--replace" in out
    assert (run / "events.jsonl").read_bytes() == log and not (run / "judge.json").exists()
    beside = json.loads((run / "judge-probe.json").read_text())
    assert beside["replaced"] is False and beside["judged"] > 0
    assert (run / "judge-probe.jsonl").read_text().count('"judge.verdict"') > 0

    assert cli.main(["judge", str(run), "--replace", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["replaced"] is True and summary["written"] == ["events.jsonl", "summary.json", "judge.json"]
    assert json.loads((run / "judge.json").read_text())["per_agent"] == beside["per_agent"]


def test_judge_reports_progress(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collab.sim import rejudge

    seen: list[tuple[int, int]] = []
    original = rejudge.judge_run

    async def watched(*args, **kwargs):
        callback = kwargs["progress"]
        kwargs["progress"] = lambda done, total: (seen.append((done, total)), callback(done, total))
        return await original(*args, **kwargs)

    monkeypatch.setattr(rejudge, "judge_run", watched)
    assert cli.main(["judge", str(run)]) == 0
    assert seen and seen[-1][0] == seen[-1][1] == len(seen)
