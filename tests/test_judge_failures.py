"""Nothing a model writes can kill a run: huge judge replies and judge errors fail one episode at most."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collab.judge import pool as pool_module
from collab.judge.pool import WorkerCrashed, WorkerPool
from collab.log.store import RunStore
from collab.sim import driver as runner
from collab.sim.runner import RunOptions, simulate

ROOT = Path(__file__).resolve().parent.parent
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def echo_pool(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    return lambda: WorkerPool("echo_worker", workers=1, timeout_s=30)


async def test_a_reply_over_one_mib_is_read_whole(echo_pool) -> None:
    pool = echo_pool()
    try:
        reply = await pool.run({"size": 1_100_000})
    finally:
        await pool.close()
    assert len(reply["echo"]) == 1_100_000


async def test_a_reply_over_the_limit_is_a_crashed_task_not_a_crashed_pool(echo_pool, monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "MAX_REPLY", 1 << 16)
    pool = echo_pool()
    try:
        with pytest.raises(WorkerCrashed, match="reply over"):
            await pool.run({"size": 100_000})
        assert (await pool.run({"size": 10}))["echo"] == "x" * 10, "the slot got a fresh worker"
    finally:
        await pool.close()


async def test_a_judge_error_fails_that_episode_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = runner.judge_episode
    victims: list[str] = []

    async def flaky(episode_id: str, *args, **kwargs):
        if not victims:
            victims.append(episode_id)
            raise RuntimeError("the judge fell over")
        return await real(episode_id, *args, **kwargs)

    monkeypatch.setattr(runner, "judge_episode", flaky)
    options = RunOptions(overrides=["engines.small={kind: scripted}"], out=tmp_path, limit=2, samples=2, argv=[])
    result = await simulate(ROOT / "scenarios/relay.yaml", options)
    assert (result.summary["episodes"], result.summary["ok"], result.summary["failed"]) == (4, 3, 1)
    ends = {r.id: r.end for r in RunStore(result.path).episodes().values()}
    assert ends[victims[0]].status == "failed" and "judge: RuntimeError: the judge fell over" in ends[victims[0]].error


async def test_a_problem_with_a_lone_surrogate_runs_once(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "s1", "problem": "What is 1 + 1? \\ud800", "answer": "2"}\n'
                    '{"id": "s2", "problem": "What is 2 + 2?", "answer": "4"}\n')
    options = RunOptions(overrides=["engines.small={kind: scripted}", f"dataset={{file: {data}}}"], out=tmp_path,
                         samples=1, argv=[])
    result = await simulate(ROOT / "scenarios/relay.yaml", options)
    assert (result.summary["episodes"], result.summary["failed"]) == (2, 0)
    events = list(RunStore(result.path).events())
    assert sum(e.type == "episode.start" for e in events) == sum(e.type == "episode.end" for e in events) == 2
    assert any("\ufffd" in e.problem for e in events if e.type == "episode.start")
    resumed = await simulate(None, RunOptions(resume=result.path, argv=[]))
    assert sum(e.type == "episode.start" for e in RunStore(resumed.path).events()) == 2, "resume re-runs nothing"
