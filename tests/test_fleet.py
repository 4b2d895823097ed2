"""``simulate --processes N``: the same episodes as one process, one writer, sticky routing, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from collab.cli import main
from collab.log.store import RunStore
from collab.sim.fleet import partition, split
from collab.sim.plan import EpisodeSpec
from collab.sim.runner import RunOptions, simulate
from tests.protocol_server import ProtocolServer

ROOT = Path(__file__).resolve().parent.parent
DRY = [str(ROOT / "scenarios/relay.yaml"), "--dry-run", "--limit", "6", "--samples", "3", "--quiet"]
SLOW = ["simulate", str(ROOT / "scenarios/relay.yaml"), "--limit", "10", "--samples", "4", "--concurrency", "4",
        "--quiet", "--set", "engines.small={kind: scripted, latency_s: 0.05}"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_dir(out: Path) -> Path:
    (path,) = list(out.iterdir())
    return path


def outcome(folder: Path) -> dict[str, Any]:
    """Per episode: its spans, grade and verdicts (what must not depend on the number of processes)."""
    return {key: ([(s.agent, s.kind, s.text) for s in r.spans], r.end and (r.end.status, r.end.answer, r.end.correct),
                  [(v.span, v.verdict) for v in r.verdicts])
            for key, r in RunStore(folder).episodes().items()}


def finished(folder: Path) -> int:
    path = folder / "events.jsonl"
    return path.read_bytes().count(b'"episode.end"') if path.exists() else 0


def test_split_and_partition_cover_everything_once() -> None:
    assert split(10, 3) == [4, 3, 3] and sum(split(1000, 7)) == 1000

    def spec(problem: str, sample: int) -> EpisodeSpec:
        return EpisodeSpec(f"{problem}-{sample}", type("P", (), {"id": problem})(), sample, None, 0)  # type: ignore[arg-type]

    many = [spec(f"p{i}", s) for i in range(5) for s in range(3)]
    shares = partition(many, 2)
    assert sorted(i for share in shares for i in share) == sorted(s.id for s in many)
    assert all(len({i.split("-")[0] for i in share} & {i.split("-")[0] for i in other}) == 0
               for share in shares for other in shares if other is not share)  # a problem stays in one process
    few = [spec("p0", s) for s in range(4)]
    assert [len(share) for share in partition(few, 3)] == [2, 1, 1]  # fewer problems than processes: spread


def test_processes_give_the_same_episodes_as_one(tmp_path: Path) -> None:
    assert main(["simulate", *DRY, "--out", str(tmp_path / "one")]) == 0
    assert main(["simulate", *DRY, "--out", str(tmp_path / "two"), "--processes", "2"]) == 0
    one, two = run_dir(tmp_path / "one"), run_dir(tmp_path / "two")
    assert outcome(one) == outcome(two) and len(outcome(two)) == 18
    lines = (two / "events.jsonl").read_bytes().splitlines()
    types = [json.loads(line)["type"] for line in lines]  # every line whole: one writer
    assert types[0] == "run.start" and types[-1] == "run.end" and types.count("run.start") == 1
    assert types.count("episode.start") == types.count("episode.end") == 18
    summary = json.loads((two / "summary.json").read_text())
    assert summary["episodes"] == 18
    assert json.loads((two / "manifest.json").read_text())["processes"] == 2


def test_local_engines_refuse_several_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", str(ROOT / "scenarios/relay.yaml"), "--limit", "1", "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--processes", "2"]) == 2
    assert "local engines (small)" in capsys.readouterr().err and not list(tmp_path.iterdir())


async def test_routing_sticks_to_the_episode_across_processes(tmp_path: Path, qwen: Any, qwen_path: str) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"{i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(6)))
    async with ProtocolServer(qwen) as first, ProtocolServer(qwen) as second:
        urls = [first.url, second.url]
        (tmp_path / "s.yaml").write_text(f"""\
name: sticky
samples: 3
concurrency: 4
dataset: {{file: {data}}}
engines: {{e: {{kind: sglang, urls: {json.dumps(urls)}, tokenizer: {json.dumps(qwen_path)}}}}}
agents: {{a: {{engine: e}}, b: {{engine: e}}}}
graph: {{start: a, turns: {{a: {{until: {{tokens: 8}}}}, b: {{until: {{tokens: 8}}}}}}, edges: [a->b, b->a]}}
limits: {{max_turns: 4}}
""")
        result = await simulate(tmp_path / "s.yaml", RunOptions(out=tmp_path / "runs", processes=2, argv=[]))
    records = RunStore(result.path).episodes()
    assert len(records) == 18
    for key, record in records.items():
        assert {turn.server for turn in record.turns} == {urls[zlib.crc32(key.encode()) % 2]}
    assert {turn.server for r in records.values() for turn in r.turns} == set(urls)
    assert result.summary["engines"]["e"]["ok"] == sum(r.end.requests for r in records.values() if r.end)


def slow_fleet(out: Path) -> subprocess.Popen[str]:
    """A slow 2-process run into ``out``, once at least 3 of its episodes have finished."""
    process = subprocess.Popen([sys.executable, "-m", "collab.cli", *SLOW, "--out", str(out), "--processes", "2"],
                               cwd=out.parent, env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.iterdir()) and finished(run_dir(out)) >= 3):
        time.sleep(0.05)
    return process


@pytest.mark.slow
def test_a_killed_fleet_resumes_and_its_lock_refuses_others(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    process = slow_fleet(out)
    folder = run_dir(out)
    assert main(["simulate", "--resume", str(folder), "--quiet"]) == 2  # the lock refuses a second writer
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 3 <= finished(folder) < 40
    assert main(["simulate", "--resume", str(folder), "--quiet", "--processes", "2"]) == 0
    records = RunStore(folder).episodes()
    assert len(records) == 40 and all(r.end is not None and r.end.status == "ok" for r in records.values())


@pytest.mark.slow
def test_a_worker_crash_is_a_clear_error_and_resumable(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    process = slow_fleet(out)
    children = [int(pid) for task in Path(f"/proc/{process.pid}/task").iterdir()
                for pid in (task / "children").read_text().split()]
    workers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "Traceback" not in err
    assert "client process" in err and "ended unexpectedly" in err and "--resume" in err
    folder = run_dir(out)
    assert main(["simulate", "--resume", str(folder), "--quiet", "--processes", "2"]) == 0
    assert len(RunStore(folder).finished()) == 40
