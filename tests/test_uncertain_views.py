"""Replay, HTML export and report of a run with uncertain handoffs (scripted engine)."""

from __future__ import annotations

import re
from pathlib import Path

from collab.cli import main
from collab.display.uncertainty import uncertainty_strip
from collab.log.store import RunStore
from collab.report.shares import token_shares

ROOT = Path(__file__).resolve().parent.parent


def test_strip_marks_the_crossing() -> None:
    profile = {"entropy": [4, 4, 21, 4], "rule": {"entropy": 1.5, "window": 1}, "at": 4, "crossed": 2.08,
               "discarded": 3, "mean_entropy": 0.8, "max_entropy": 2.1}
    text = uncertainty_strip(profile).plain
    assert text.startswith("  ") and "▶" in text and "handed off at token 4" in text and "3 tok discarded" in text
    bars = text.split("▶")[0].strip()
    assert len(bars) == 4 and bars[2] == "█" and bars[0] == bars[1] == bars[3] != "█"
    assert uncertainty_strip(None) is None
    long = uncertainty_strip({**profile, "entropy": [4] * 500, "at": None}, width=50).plain
    assert len(long.split("  entropy")[0].strip()) == 50 and "handed off" not in long


def test_replay_html_and_report_show_uncertain_handoffs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(ROOT / "scenarios/uncertain_handoff.yaml"), "--dry-run", "--limit", "2",
                 "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    records = list(RunStore(run).episodes().values())
    handed = next(r for r in records if any(s.agent == "large" for s in r.spans))
    assert handed.spans[0].trigger == "uncertain" and handed.spans[1].agent == "large"
    html = tmp_path / "e.html"
    assert main(["show", str(run), "--episode", handed.id, "--html", str(html)]) == 0
    page = re.sub(r"<[^>]+>|[│╰╯─\s]+", " ", html.read_text())  # the caption may wrap inside the panel
    assert re.search(r"handed off\s+at token \d+", page)
    section = token_shares([r for r in records if r.end is not None])
    assert section is not None and section.columns[3:] == ["large tok/episode (share)", "small tok/episode (share)"]
    by_point = {row[0]: row for row in section.rows}
    assert by_point["entropy=3.0"][3].endswith("(0%)")  # above ln 8 the scripted writer never hands off
    assert not by_point["entropy=1.5"][3].endswith("(0%)")
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "plots" / "frontier.png").exists()
    assert "Tokens written per agent" in (tmp_path / "report" / "report.md").read_text()
