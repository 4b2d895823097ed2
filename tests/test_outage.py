"""Every server of an engine down for longer than the retry budget: episodes wait, then finish."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from protocol_server import ProtocolServer

from collab.events import EpisodeEnd, EpisodeStart, Event
from collab.sim.runner import RunOptions, simulate

ROOT = Path(__file__).resolve().parent.parent
DOWN_S = 3.0


async def test_episodes_ride_out_a_server_restart(qwen, qwen_path: str, tmp_path: Path) -> None:
    server = ProtocolServer(qwen, token_delay_s=0.002)
    await server.start()
    port = server.port
    engine = {"kind": "sglang", "url": server.url, "tokenizer": qwen_path, "retries": 2, "backoff_s": 0.01,
              "timeout_s": 5, "outage_wait_s": 60}
    options = RunOptions(overrides=[f"engines.small={json.dumps(engine)}"], out=tmp_path, limit=6, samples=4,
                         concurrency=4, argv=[])
    ended: list[EpisodeEnd] = []
    three_done = asyncio.Event()

    def observe(event: Event) -> None:
        if isinstance(event, EpisodeEnd):
            ended.append(event)
            if len(ended) >= 3:
                three_done.set()

    run = asyncio.create_task(simulate(ROOT / "scenarios/relay.yaml", options, [observe]))
    await three_done.wait()
    await server.stop()
    down_at, peak_waiting = time.monotonic(), 0
    while time.monotonic() - down_at < DOWN_S:
        peak_waiting = max(peak_waiting, options.waiting["small"])
        await asyncio.sleep(0.05)
    done_while_down = len(ended)
    await server.start(port=port)
    result = await run
    await server.stop()
    summary = result.summary
    assert (summary["episodes"], summary["failed"]) == (24, 0), summary
    assert done_while_down < 24, "the outage hit episodes in flight"
    assert peak_waiting > 0, "waiting episodes are visible while every server is down"
    assert summary["engines"]["small"]["outage_waits"] > 0
    print(f"outage {DOWN_S:g} s (retry budget ~{2 * 0.01 * 3:.2f} s): 24 episodes, 0 failed, "
          f"{summary['engines']['small']['outage_waits']} requests waited, peak {peak_waiting} waiting at once")


async def test_an_outage_longer_than_the_wait_fails_its_episodes(qwen, qwen_path: str, tmp_path: Path) -> None:
    server = ProtocolServer(qwen)
    await server.start()
    url = server.url
    engine = {"kind": "sglang", "url": url, "tokenizer": qwen_path, "retries": 1, "backoff_s": 0.01,
              "timeout_s": 5, "outage_wait_s": 0.5}
    options = RunOptions(overrides=[f"engines.small={json.dumps(engine)}"], out=tmp_path, limit=2, samples=1,
                         concurrency=2, argv=[])
    ended: list[EpisodeEnd] = []
    started = asyncio.Event()

    def observe(event: Event) -> None:
        if isinstance(event, EpisodeStart):
            started.set()
        elif isinstance(event, EpisodeEnd):
            ended.append(event)

    run = asyncio.create_task(simulate(ROOT / "scenarios/relay.yaml", options, [observe]))
    await started.wait()
    await server.stop()
    result = await run
    assert result.summary["failed"] >= 1
    assert all("connect" in (e.error or "") for e in ended if e.status == "failed")
