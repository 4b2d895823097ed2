"""The runner end to end on the scripted engine: episodes, handoffs, injections, limits, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from collab.cli import main
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def run_dir(out: Path) -> Path:
    (path,) = list(out.iterdir())
    return path


def test_dry_run_relay_one_end_per_episode(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--dry-run", "--limit", "5", "--out", str(out),
                 "--quiet"]) == 0
    store = RunStore(run_dir(out))
    events = list(store.events())
    ends = [e for e in events if e.type == "episode.end"]
    assert len(ends) == 5 * 2 and all(e.status == "ok" for e in ends)
    assert len({e.episode_id for e in ends}) == 10
    assert next(e.type for e in events) == "run.start" and events[-1].type == "run.end"
    summary = json.loads((store.path / "summary.json").read_text())
    assert summary["episodes"] == 10 and summary["tokens"]["requests_extending_previous"] == 1.0
    for name in ("scenario.yaml", "manifest.json"):
        assert (store.path / name).exists()


def test_sweep_points_multiply_episodes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(ROOT / "scenarios/interjector.yaml"), "--dry-run", "--limit", "2", "--samples", "3",
                 "--out", str(out), "--quiet"]) == 0
    records = RunStore(run_dir(out)).episodes()
    assert len(records) == 2 * 3 * 2
    points = Counter(json.dumps(r.start.point) for r in records.values())
    assert sorted(points.values()) == [6, 6]
    injected = 0
    for record in records.values():
        kinds = [s.kind for s in record.spans]
        if kinds == ["generated"]:  # the solver answered in its first turn: no edge is taken after the end
            assert record.end.end_reason == "answer"
            continue
        assert kinds[:2] == ["generated", "injected"]
        injected += 1
    assert injected >= len(records) // 2


SCRIPTED = """\
name: walk
dataset: {{file: {data}}}
engines:
  e:
    kind: scripted
    script:
      a: ["Alpha one. Alpha two. Alpha three.", "All again.\\n"]
      b: "Beta says Wait and stops here. Never seen."
      c: "Gamma closes.</think>\\n\\nThe answer is $\\\\boxed{{50}}$."
agents:
  a: {{engine: e}}
  b: {{engine: e}}
  c: {{engine: e}}
  note: {{inject: {{text: "NOTE", prefix: "[", suffix: "]"}}}}
graph:
  start: a
  turns:
    a: {{until: {{tokens: 12}}}}
    b: {{until: {{stop: ["Wait"]}}}}
    note: {{}}
    c: {{until: {{end: answer}}}}
  edges:
    - {{from: a, to: b, when: {{not_contains: "again"}}}}
    - {{from: a, to: c}}
    - {{from: b, to: note}}
    - {{from: note, to: a, repeat: 1}}
"""


def test_triggers_conditions_and_injection(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCRIPTED.format(data=ROOT / "scenarios/data/demo.jsonl"))
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--limit", "1", "--out", str(out), "--quiet"]) == 0
    (record,) = RunStore(run_dir(out)).episodes().values()
    spans = [(s.agent, s.text, getattr(s, "trigger", "")) for s in record.spans]
    assert spans == [
        ("a", "Alpha one. Alpha two. ", "align"),  # 12 tokens, then to the end of the sentence
        ("b", "Beta says Wait", "stop"),
        ("note", "[NOTE]", ""),
        ("a", "All again.\n", "yield"),
        ("c", "Gamma closes.</think>\n\nThe answer is $\\boxed{50}$.", "eos"),
    ]
    assert record.end.status == "ok" and record.end.end_reason == "answer"
    assert record.end.correct is True and record.end.answer == "50"


def test_limits_end_episodes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--dry-run", "--limit", "2", "--out", str(out),
                 "--quiet", "--set", "limits.max_tokens=50", "--set", "limits.max_turns=2"]) == 0
    for record in RunStore(run_dir(out)).episodes().values():
        assert record.end.end_reason in ("max_tokens", "max_turns", "answer")
        assert sum(s.tokens for s in record.spans) <= 50 and len(record.spans) <= 2


def test_runs_are_deterministic(tmp_path: Path) -> None:
    texts = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--dry-run", "--out", str(out), "--quiet"]) == 0
        records = RunStore(run_dir(out)).episodes()
        texts.append({k: [s.text for s in r.spans] for k, r in records.items()})
    assert texts[0] == texts[1]


def test_sigkill_then_resume_ends_every_episode_once(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "collab.cli", "simulate", str(ROOT / "scenarios/relay.yaml"), "--dry-run",
               "--limit", "12", "--samples", "4", "--concurrency", "2", "--out", str(out), "--quiet",
               "--set", "engines.small={kind: scripted, latency_s: 0.1}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = list(out.iterdir()) if out.exists() else []
        log = runs[0] / "events.jsonl" if runs else None
        if log and log.exists() and log.read_bytes().count(b'"episode.end"') >= 5:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    path = run_dir(out)
    before = {k for k, r in RunStore(path).episodes().items() if r.end is not None}
    assert 5 <= len(before) < 48, f"{len(before)} episodes had ended when the kill landed"
    assert main(["simulate", "--resume", str(path), "--quiet"]) == 0
    events = list(RunStore(path).events())
    ends = Counter(e.episode_id for e in events if e.type == "episode.end")
    starts = Counter(e.episode_id for e in events if e.type == "episode.start")
    assert len(ends) == 48 and set(ends.values()) == {1} and set(starts.values()) == {1}
    assert before <= set(ends)


def test_request_watcher_sees_every_request_leave_and_return(tmp_path: Path) -> None:
    import asyncio

    from collab.sim.runner import RunOptions, simulate

    changes: list[tuple[str, int]] = []
    options = RunOptions(out=tmp_path / "runs", limit=3, dry_run=True, argv=[],
                         watch=lambda engine, change: changes.append((engine, change)))
    result = asyncio.run(simulate(ROOT / "scenarios/relay.yaml", options))
    total = Counter[str]()
    for engine, change in changes:
        total[engine] += change
        assert total[engine] >= 0
    requests = sum(1 for _, change in changes if change == 1)
    assert requests >= result.summary["episodes"] > 0
    assert all(count == 0 for count in total.values())
