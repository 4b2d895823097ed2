"""The llama.cpp engine against a real ``llama-server`` on the SmolLM2 GGUF (see real_server.py).

Protocol properties only (exact ids, finish reasons, cache reuse, cancellation), never the model's text.
Run with ``-s`` to see the relay's cache figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from real_server import RealServer, start_llama
from test_real_server import metric

from collab.engines.base import GenerateRequest, RequestContext
from collab.engines.build import build_engine
from collab.engines.http.llamacpp import LlamaCppEngine
from collab.scenario.schema import LlamaCppEngineConfig

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory, smol_gguf: Path) -> Iterator[RealServer]:
    server = start_llama(tmp_path_factory.mktemp("llama-server"), smol_gguf)
    yield server
    server.stop()


def engine_for(real: RealServer, **options: Any) -> LlamaCppEngine:
    engine = build_engine("real", LlamaCppEngineConfig(**real.engine(**options)))
    assert isinstance(engine, LlamaCppEngine)
    return engine


def req(ids: list[int], episode: str = "e", **kw: Any) -> GenerateRequest:
    """A request without a warm-up first."""
    kw.setdefault("max_new_tokens", 16)
    return GenerateRequest(list(ids), context=RequestContext(episode_id=episode, purpose="align"), **kw)


async def test_relay_scenario_end_to_end(llama: RealServer, tmp_path: Path) -> None:
    from collab.log.store import RunStore
    from collab.sim.runner import RunOptions, simulate

    options = RunOptions(overrides=[f"engines.small={json.dumps(llama.engine())}"], out=tmp_path)
    result = await simulate(ROOT / "scenarios" / "relay.yaml", options)
    summary, tokens = result.summary, result.summary["tokens"]
    tokenizer = engine_for(llama).tokenizer
    turns = [e for e in RunStore(result.path).events() if e.type == "turn"]
    # a span without its ids, or whose ids are not its text (a turn that ended at once holds no ids and no text)
    retokenized = sum(t.ids.get(tokenizer.key) is None or tokenizer.decode(t.ids[tokenizer.key]) != t.text
                      for t in turns)
    print(f"\nllama-server {llama.version}: {summary['episodes']} episodes, {tokens['requests']} requests, "
          f"extending their predecessor {tokens['requests_extending_previous']:.1%}, {len(turns)} turns, "
          f"{retokenized} re-tokenized, cached reported {tokens['cached_reported']} / ideal {tokens['cached_ideal']} "
          f"= {tokens['reported_over_ideal']:.3f}")
    assert summary["episodes"] == 6 and summary["failed"] == 0, summary["failures"]
    assert tokens["requests_extending_previous"] == 1.0
    assert turns and retokenized == 0, "every span holds the server's own token ids"
    # above 1 when episodes share a prompt: a slot keeps one episode's prefix for the next (the ideal is per episode)
    assert 0.9 <= tokens["reported_over_ideal"] <= 1.2, tokens


async def test_eos_stop_strings_and_length(llama: RealServer) -> None:
    engine = engine_for(llama)
    tok = engine.tokenizer
    ids = tok.render_prompt("Say hello.")
    eos = await engine.generate(req(ids, max_new_tokens=300, temperature=0.0, stop_token_ids=tok.eos_token_ids))
    words = await engine.generate(req(tok.render_prompt("Write three sentences about the sea."), max_new_tokens=200,
                                      temperature=0.0, stop=[".", ","]))  # fmt: skip
    short = await engine.generate(req(ids, max_new_tokens=3, temperature=0.6, seed=1))
    await engine.aclose()
    assert eos.finish_reason == "stop" and eos.matched in tok.eos_token_ids and eos.token_ids[-1] == eos.matched
    assert words.finish_reason == "stop" and words.text.endswith(str(words.matched)), "the stop string kept"
    assert words.text == tok.decode(words.token_ids)
    assert (short.finish_reason, len(short.token_ids), short.prompt_tokens) == ("length", 3, len(ids))


async def test_streaming_gives_the_same_ids(llama: RealServer) -> None:
    whole, streamed = engine_for(llama), engine_for(llama, stream=True)
    ids = whole.tokenizer.render_prompt("Name four colours.")
    a = await whole.generate(req(ids, max_new_tokens=24, temperature=0.0))
    b = await streamed.generate(req(ids, max_new_tokens=24, temperature=0.0))
    again = await streamed.generate(req(ids + b.token_ids, max_new_tokens=8, temperature=0.0))
    for engine in (whole, streamed):
        await engine.aclose()
    assert (a.token_ids, a.finish_reason) == (b.token_ids, b.finish_reason) and b.text == a.text
    assert again.cached_tokens >= len(ids), "a streamed answer reports its cache hits too"


@pytest.mark.parametrize("stream", [False, True])
async def test_log_probabilities(llama: RealServer, stream: bool) -> None:
    engine = engine_for(llama, stream=stream)
    ids = engine.tokenizer.render_prompt("Count from one to ten.")
    out = await engine.generate(req(ids, max_new_tokens=12, temperature=0.0, logprobs=5, stop=[" 5"]))
    await engine.aclose()
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids) > 0
    for found in out.logprobs:
        assert len(found.top) == 5 and list(found.top) == sorted(found.top, reverse=True)
        assert found.logprob <= 0 and found.logprob == pytest.approx(found.top[0], abs=1e-3)  # greedy: the argmax


async def test_cancellation_stops_the_request_on_the_server(llama: RealServer) -> None:
    """Streamed: the server stops at its next write to the closed connection."""
    engine = engine_for(llama, stream=True)
    counting = engine.tokenizer.encode(", ".join(str(i) for i in range(1, 40)) + ",")
    task = asyncio.create_task(engine.generate(req(counting, max_new_tokens=3000, temperature=0.0)))
    deadline = time.monotonic() + 120
    while metric(llama.metrics(), "llamacpp:requests_processing") < 1:
        assert time.monotonic() < deadline and not task.done(), "the request never ran"
        await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.aclose()
    while metric(llama.metrics(), "llamacpp:requests_processing") > 0:
        assert time.monotonic() < deadline, "the server kept generating after the client went away"
        await asyncio.sleep(0.2)
    assert engine.stats.cancelled == 1
