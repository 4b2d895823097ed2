"""Kills, interrupts, full disks and shards: nothing is lost, nothing is duplicated."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from collab.cli import main
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
RELAY = str(ROOT / "scenarios/relay.yaml")
SLOW = ["--set", "engines.small={kind: scripted, latency_s: 0.01}"]


def only_run(out: Path) -> Path:
    (path,) = [p for p in out.iterdir() if p.is_dir()]
    return path


def outcomes(path: Path) -> dict[str, tuple]:
    return {
        k: (tuple(s.text for s in r.spans), r.end.status, r.end.correct, r.end.answer)
        for k, r in RunStore(path).episodes().items() if r.end is not None
    }


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "collab.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_twenty_random_sigkills_then_resume_match_a_clean_run(tmp_path: Path) -> None:
    args = [RELAY, "--dry-run", "--limit", "12", "--samples", "5", "--concurrency", "4", "--quiet", *SLOW]
    assert main(["simulate", *args, "--out", str(tmp_path / "clean")]) == 0
    clean = outcomes(only_run(tmp_path / "clean"))
    assert len(clean) == 60

    out = tmp_path / "killed"
    rng = random.Random(7)
    process = start(["simulate", *args, "--out", str(out)])
    for _ in range(20):
        time.sleep(rng.uniform(0.3, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close(), process.stderr.close()
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if not runs or not (runs[0] / "manifest.json").exists():  # killed before the run was set up
            for run in runs:
                shutil.rmtree(run)
            process = start(["simulate", *args, "--out", str(out)])
            continue
        process = start(["simulate", "--resume", str(runs[0]), "--quiet"])
    process.communicate(timeout=120)
    path = only_run(out)
    assert main(["simulate", "--resume", str(path), "--quiet"]) == 0
    events = list(RunStore(path).events())
    assert set(Counter(e.episode_id for e in events if e.type == "episode.end").values()) == {1}
    assert set(Counter(e.episode_id for e in events if e.type == "episode.start").values()) == {1}
    assert outcomes(path) == clean


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    process = start(["simulate", RELAY, "--dry-run", "--limit", "12", "--samples", "4", "--concurrency", "2",
                     "--quiet", "--out", str(out), "--set", "engines.small={kind: scripted, latency_s: 0.05}"])
    deadline = time.time() + 60
    while time.time() < deadline:
        logs = list(out.glob("*/events.jsonl")) if out.exists() else []
        if logs and logs[0].read_bytes().count(b'"episode.end"') >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    path = only_run(out)
    assert f"collab simulate --resume {path}" in err and "Traceback" not in err
    events = list(RunStore(path).events())
    assert events[-1].type == "run.end" and events[-1].status == "interrupted"
    assert main(["simulate", "--resume", str(path), "--quiet"]) == 0
    ends = Counter(e.episode_id for e in RunStore(path).events() if e.type == "episode.end")
    assert len(ends) == 48 and set(ends.values()) == {1}


def test_unwritable_run_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["simulate", RELAY, "--dry-run", "--quiet", "--out", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert "error: cannot create run folder" in err and "Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(RunStore, "events_path", property(lambda self: Path("/dev/full")))
    assert main(["simulate", RELAY, "--dry-run", "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err


def test_retry_failed_reruns_only_failed_episodes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", RELAY, "--dry-run", "--limit", "2", "--quiet", "--out", str(out)]) == 0
    path = only_run(out)
    lines = (path / "events.jsonl").read_text().splitlines()
    victim = next(json.loads(line)["episode_id"] for line in lines if '"episode.end"' in line)
    patched = [line.replace('"status":"ok"', '"status":"failed"') if victim in line and '"episode.end"' in line
               else line for line in lines]
    (path / "events.jsonl").write_text("\n".join(patched) + "\n")
    before = outcomes(path)
    assert main(["simulate", "--resume", str(path), "--quiet"]) == 0
    assert outcomes(path)[victim][1] == "failed"  # plain resume keeps failed episodes
    assert main(["simulate", "--resume", str(path), "--retry-failed", "--quiet"]) == 0
    after = outcomes(path)
    assert after[victim][1] == "ok"
    assert {k: v for k, v in after.items() if k != victim} == {k: v for k, v in before.items() if k != victim}


DATA_ROWS = 500


@pytest.mark.slow
def test_four_shards_merge_into_the_single_process_run(tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(
        json.dumps({"id": f"p{i}", "problem": f"What is {i} + 1?", "answer": str(i % 20)}) + "\n"
        for i in range(DATA_ROWS)
    ))
    scenario = tmp_path / "sweep.yaml"
    scenario.write_text(f"""\
name: sweep
samples: 10
concurrency: 256
dataset: {{file: {data}}}
engines: {{e: {{kind: scripted}}}}
agents: {{a: {{engine: e}}, b: {{engine: e}}}}
graph:
  start: a
  turns: {{a: {{until: {{tokens: 40}}}}, b: {{until: {{tokens: 40}}}}}}
  edges: [a->b, b->a]
limits: {{max_turns: 4}}
sweep: {{agents.b.temperature: [0.2, 0.8]}}
""")
    assert main(["simulate", str(scenario), "--quiet", "--out", str(tmp_path / "single")]) == 0
    shards = tmp_path / "shards"
    for i in range(4):
        assert main(["simulate", str(scenario), "--quiet", "--shard", f"{i}/4", "--out", str(shards)]) == 0
    assert main(["merge", *map(str, sorted(shards.iterdir())), "--out", str(tmp_path / "merged")]) == 0

    def comparable(path: Path) -> dict:
        summary = json.loads((path / "summary.json").read_text())
        summary.pop("wall_s"), summary.pop("engines", None)  # timing and per-process engine counters
        return summary

    single, merged = only_run(tmp_path / "single"), only_run(tmp_path / "merged")
    assert comparable(single)["episodes"] == 10_000
    assert comparable(merged) == comparable(single)
    assert outcomes(merged) == outcomes(single)
