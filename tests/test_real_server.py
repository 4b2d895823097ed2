"""The HTTP engines against a real inference server (vLLM's CPU build by default; see real_server.py).

These tests assert protocol properties (exact ids, finish reasons, cache reuse, aborts), never the
model's text.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_server import RealServer, start

from collab.engines.base import Completion, EngineError, GenerateRequest, RequestContext
from collab.engines.build import build_engine
from collab.engines.http.client import HTTPEngine
from collab.scenario.schema import OpenAIEngineConfig, SGLangEngineConfig

ROOT = Path(__file__).resolve().parent.parent
NEVER = ["☃", "☄", "★", "☆"]
"""Stop strings the model never writes: sent first, they fill the server's four."""
METRICS = {
    "openai": ("vllm:num_requests_running", "vllm:generation_tokens_total", "vllm:request_success_total"),
    "sglang": ("sglang:num_running_reqs", "sglang:generation_tokens_total", None),
}
"""Requests running, tokens generated, requests finished (servers launched with their metrics on)."""

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[RealServer]:
    started = time.perf_counter()
    server = start(tmp_path_factory.mktemp("real-server"))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # into the test log, also under -q: CI shows the version
        print(f"\nreal server: {server.kind} version {server.version} at {server.url} "
              f"(ready in {time.perf_counter() - started:.0f}s)")
    yield server
    server.stop()


def engine_for(real: RealServer, **options: Any) -> HTTPEngine:
    schema = OpenAIEngineConfig if real.kind == "openai" else SGLangEngineConfig
    engine = build_engine("real", schema(**real.engine(**options)))
    assert isinstance(engine, HTTPEngine)
    return engine


def req(ids: list[int], episode: str = "e", purpose: str = "align", **kw: Any) -> GenerateRequest:
    """A request; purpose ``align`` sends no warm-up first."""
    kw.setdefault("max_new_tokens", 16)
    return GenerateRequest(list(ids), context=RequestContext(episode_id=episode, purpose=purpose), **kw)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        found = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? ([0-9.e+-]+)$", line)
        if found and all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
            total += float(found.group(2))
    return total


async def test_relay_scenario_end_to_end(real: RealServer, tmp_path: Path) -> None:
    from collab.log.store import RunStore
    from collab.sim.runner import RunOptions, simulate

    options = RunOptions(overrides=[f"engines.small={json.dumps(real.engine())}"], out=tmp_path)
    result = await simulate(ROOT / "scenarios" / "relay.yaml", options)
    summary, tokens = result.summary, result.summary["tokens"]
    if figures := os.environ.get("COLLAB_FIGURES"):
        await asyncio.to_thread(Path(figures).write_text, json.dumps({"server": real.version, **tokens}))
    assert summary["episodes"] == 6 and summary["failed"] == 0, summary["failures"]
    assert tokens["requests_extending_previous"] == 1.0
    assert 0.9 <= tokens["reported_over_ideal"] <= 1.2, tokens
    if real.kind == "sglang":
        assert tokens["reported_over_ideal"] >= 0.95, "SGLang's radix cache keeps every token"
    manifest = json.loads((result.path / "manifest.json").read_text())
    block = manifest["engines"]["small"].get("cache_block", 1)
    assert tokens["cached_ideal_blocks"] % block == 0 or block == 1
    turns = [e for e in RunStore(result.path).events() if e.type == "turn"]
    tokenizer = engine_for(real).tokenizer
    assert turns and all(t.ids[tokenizer.key] and tokenizer.decode(t.ids[tokenizer.key]) == t.text for t in turns), (
        "every span holds the server's own token ids (none re-tokenized)"
    )


async def test_stop_strings_beyond_the_servers_limit(real: RealServer) -> None:
    engine = engine_for(real)
    tok = engine.tokenizer
    ids = tok.render_prompt("Write three sentences about the sea, with commas.")
    stops = [*NEVER, ",", ".", " the"]
    found = await engine.generate(req(ids, max_new_tokens=200, stop=stops, temperature=0.0))
    assert (found.finish_reason, found.matched in stops[4:]) == ("stop", True), found
    assert found.text == tok.decode(found.token_ids) and found.text.endswith(str(found.matched))
    assert not any(s in tok.decode(found.token_ids[:-1]) for s in stops), "cut at the first stop"
    server_side = await engine.generate(req(ids, max_new_tokens=200, stop=[",", "."], temperature=0.0))
    assert server_side.finish_reason == "stop" and server_side.text.endswith(str(server_side.matched))
    await engine.aclose()
    if real.kind == "openai":
        unlimited = engine_for(real, max_stop_strings=None)
        with pytest.raises(EngineError, match="400") as refused:
            await unlimited.generate(req(ids, stop=stops))
        await unlimited.aclose()
        assert not refused.value.retryable, "the server's own limit, met when collab does not respect it"


async def test_eos_and_length(real: RealServer) -> None:
    engine = engine_for(real)
    tok = engine.tokenizer
    ids = tok.render_prompt("Say hello.")
    eos = await engine.generate(req(ids, max_new_tokens=300, temperature=0.0, stop_token_ids=tok.eos_token_ids))
    short = await engine.generate(req(ids, max_new_tokens=3, temperature=0.6, seed=1))
    await engine.aclose()
    assert eos.finish_reason == "stop" and eos.matched in tok.eos_token_ids and eos.token_ids[-1] == eos.matched
    assert (short.finish_reason, len(short.token_ids), short.prompt_tokens) == ("length", 3, len(ids))


async def test_streaming(real: RealServer) -> None:
    engine = engine_for(real, stream=True)
    tok = engine.tokenizer
    ids = tok.render_prompt("Name four colours.")
    first = await engine.generate(req(ids, max_new_tokens=24, temperature=0.0))
    again = await engine.generate(req(ids + first.token_ids, max_new_tokens=24, temperature=0.0))
    await engine.aclose()
    assert first.token_ids and first.text == tok.decode(first.token_ids)
    assert first.finish_reason in ("stop", "length") and first.prompt_tokens == len(ids)
    assert again.cached_tokens > 0, "a streamed answer reports its cache hits too"


async def test_cancellation_stops_the_request_on_the_server(real: RealServer) -> None:
    running, generated_total, finished_total = METRICS[real.kind]
    engine = engine_for(real)
    counting = engine.tokenizer.encode(", ".join(str(i) for i in range(1, 40)) + ",")
    finished = metric(real.metrics(), finished_total) if finished_total else 0.0
    task = asyncio.create_task(engine.generate(req(counting, max_new_tokens=3000, temperature=0.0)))
    deadline = time.monotonic() + 120
    while metric(real.metrics(), running) < 1:
        assert time.monotonic() < deadline and not task.done(), "the request never ran"
        await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.aclose()
    while metric(real.metrics(), running) > 0:
        assert time.monotonic() < deadline, "the server kept generating after the client went away"
        await asyncio.sleep(0.2)
    generated = metric(real.metrics(), generated_total)
    await asyncio.sleep(1.0)
    text = real.metrics()
    assert metric(text, generated_total) == generated, "nothing is generated any more"
    if finished_total:
        assert metric(text, finished_total) == finished, "the request was stopped, not finished"
    assert engine.stats.cancelled == 1


async def test_episodes_sharing_a_prefix_hit_the_cache(real: RealServer) -> None:
    engine = engine_for(real)
    await engine.open()
    block = getattr(engine, "cache_block", 1)
    tok = engine.tokenizer
    shared = tok.render_prompt("Here is a long problem statement. " * 12 + "What is 12 times 13?")
    a, b = await asyncio.gather(*(
        engine.generate(req(shared, episode=f"shared-{i}", purpose="turn", max_new_tokens=4, seed=i))
        for i in range(2)
    ))
    assert engine.stats.warmups == 1, "one warm-up computes the shared prompt for both episodes"
    for c in (a, b):
        assert isinstance(c, Completion) and c.cached_tokens == (len(shared) - 1) // block * block
    other = await engine.generate(req(shared + tok.encode(" And 14 times 15?"), episode="shared-3", max_new_tokens=4))
    await engine.aclose()
    assert other.cached_tokens >= (len(shared) - 1) // block * block and other.cached_tokens % block == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_log_probabilities(real: RealServer, stream: bool) -> None:
    """Per-token log-probabilities of greedy output: one per token, the chosen one the best of the top 5."""
    engine = engine_for(real, stream=stream)
    ids = engine.tokenizer.render_prompt("Count from one to ten.")
    out = await engine.generate(req(ids, max_new_tokens=12, temperature=0.0, logprobs=5))
    await engine.aclose()
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids) > 0
    for found in out.logprobs:
        assert len(found.top) in (5, 6) and list(found.top) == sorted(found.top, reverse=True)
        assert found.logprob <= 0 and found.logprob == pytest.approx(found.top[0], abs=1e-3)  # greedy: the argmax
        assert found.entropy >= 0
