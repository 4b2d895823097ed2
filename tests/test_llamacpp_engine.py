"""The llama.cpp engine (native ``/completion`` with token ids) against the protocol test server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from protocol_server import FAULTS, ProtocolServer

from collab.engines.base import Completion, Engine, EngineError, GenerateRequest, RequestContext
from collab.engines.build import build_engine
from collab.engines.http.client import HTTPSettings
from collab.engines.http.llamacpp import SAMPLERS, LlamaCppEngine
from collab.engines.tokenizers import HFTokenizer
from collab.scenario.schema import LlamaCppEngineConfig

FAST = HTTPSettings(backoff_s=0.001, health_timeout_s=5)
ROOT = Path(__file__).resolve().parent.parent
LLAMA_FAULTS = tuple(k for k in FAULTS if k != "overlap")
"""The faults of the protocol server (``overlap`` is SGLang's bug, in ``/generate`` only)."""


def prompt(qwen: HFTokenizer, i: int) -> list[int]:
    return qwen.render_prompt(f"Problem {i}: what is {i} + {i * 7}?")


def req(ids: list[int], episode: str = "ep", **kw: Any) -> GenerateRequest:
    """A request; purpose ``align`` sends no warm-up first."""
    kw.setdefault("max_new_tokens", 16)
    return GenerateRequest(list(ids), context=RequestContext(episode_id=episode, purpose="align"), **kw)


def expected(server: ProtocolServer, request: GenerateRequest) -> list[int]:
    p = {"max_new_tokens": request.max_new_tokens, "stop": request.stop, "sampling_seed": request.seed}
    return server.expected(request.input_ids, p)


def engine_on(server: ProtocolServer, qwen_path: str, **options: Any) -> LlamaCppEngine:
    return LlamaCppEngine("lc", url=server.url, tokenizer=qwen_path, http=options.pop("http", FAST), **options)


def test_payload(qwen_path: str) -> None:
    engine = LlamaCppEngine("lc", url="h:8080/", tokenizer=qwen_path)
    assert engine.servers[0].url == "http://h:8080" and isinstance(engine, Engine)
    request = req([5, 6], temperature=0.6, top_p=0.95, top_k=20, seed=3, stop=["\n\n"], stop_token_ids=[9])
    assert engine.wire.payload(request, stream=False) == {
        "prompt": [5, 6], "n_predict": 16, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "samplers": SAMPLERS,
        "cache_prompt": True, "return_tokens": True, "stream": False, "seed": 3, "stop": ["\n\n"],
    }  # fmt: skip
    plain = engine.wire.payload(req([5]), stream=True)
    assert plain["top_k"] == 0 and plain["stream"] and not {"seed", "stop", "n_probs"} & set(plain)
    scored = engine.wire.payload(replace(request, logprobs=5), stream=False)
    assert (scored["n_probs"], scored["post_sampling_probs"]) == (5, False) and "stop" not in scored


def test_scenario_entry_builds_the_engine(qwen_path: str) -> None:
    config = LlamaCppEngineConfig(kind="llamacpp", urls=["h:1", "h:2"], tokenizer=qwen_path, retries=7, stream=True)
    engine = build_engine("lc", config)
    assert isinstance(engine, LlamaCppEngine) and engine.replicas == 2 and engine.wire.stream
    assert engine.http == replace(HTTPSettings(), retries=7)
    with pytest.raises(ValueError, match="needs `url` or `urls`"):
        LlamaCppEngineConfig(kind="llamacpp", tokenizer=qwen_path)
    with pytest.raises(ValueError, match="needs `model` or `tokenizer`"):
        LlamaCppEngineConfig(kind="llamacpp", url="h:1")


@pytest.mark.parametrize("stream", [False, True])
async def test_generation_is_exact_and_reports_cache_hits(qwen: HFTokenizer, qwen_path: str, stream: bool) -> None:
    async with ProtocolServer(qwen, paragraph_rate=0.3) as srv:
        engine = engine_on(srv, qwen_path, stream=stream)
        manifest = await engine.open()
        ids = prompt(qwen, 1)
        first = req(ids, max_new_tokens=40, stop=["\n\n"], seed=1)
        a = await engine.generate(first)
        follow = req(ids + a.token_ids + qwen.encode(" So"), max_new_tokens=5, seed=2)
        b = await engine.generate(follow)
        await engine.aclose()
    assert manifest["kind"] == "llamacpp" and manifest["servers"][0]["slot_context"] == srv.context_length
    assert all(attempt.path == "/completion" for attempt in srv.attempts)
    assert a.token_ids == expected(srv, first) and a.text == qwen.decode(a.token_ids)
    assert (a.finish_reason, a.matched) == ("stop", "\n\n") and a.text.endswith("\n\n"), "the stop string kept"
    assert (b.finish_reason, b.matched, len(b.token_ids)) == ("length", None, 5)
    assert b.prompt_tokens == len(follow.input_ids)
    assert b.cached_tokens == len(ids) + len(a.token_ids) - 1, "timings.cache_n, not tokens_cached"


async def test_eos_and_stop_token_ids(qwen: HFTokenizer, qwen_path: str) -> None:
    eos = qwen.eos_token_ids[0]
    async with ProtocolServer(qwen, eos_rate=1.0) as srv:
        engine = engine_on(srv, qwen_path)
        ended = await engine.generate(req(prompt(qwen, 2), stop_token_ids=[eos]))
        await engine.aclose()
    assert (ended.finish_reason, ended.matched, ended.token_ids) == ("stop", eos, [eos])
    async with ProtocolServer(qwen) as srv:
        engine = engine_on(srv, qwen_path)
        period = qwen.encode(".")[0]
        c = await engine.generate(req(prompt(qwen, 2), max_new_tokens=200, stop_token_ids=[period]))
        await engine.aclose()
    assert (c.finish_reason, c.matched, c.token_ids[-1]) == ("stop", period, period)
    assert period not in c.token_ids[:-1], "cut here at a stop id the server does not stop at"


async def test_a_stream_missing_ids_is_asked_for_again_whole(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, partial_utf8=0.2) as srv:
        engine = engine_on(srv, qwen_path, stream=True)
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=30, seed=i) for i in range(4)]
        results = [await engine.generate(r) for r in requests]
        await engine.aclose()
    for request, result in zip(requests, results, strict=True):
        assert result.token_ids == expected(srv, request) and len(result.token_ids) == 30
    assert len(srv.attempts) == 2 * len(requests), "each stream lost some ids, then one whole answer"


@pytest.mark.parametrize("stream", [False, True])
async def test_log_probabilities_cover_every_token_with_stop_strings(
    qwen: HFTokenizer, qwen_path: str, stream: bool
) -> None:
    async with ProtocolServer(qwen, paragraph_rate=0.0) as srv:
        engine = engine_on(srv, qwen_path, stream=stream)
        request = req(prompt(qwen, 3), max_new_tokens=60, stop=[" the", " so"], seed=3, logprobs=4)
        out = await engine.generate(request)
        await engine.aclose()
    assert out.token_ids == expected(srv, request)
    assert (out.finish_reason, out.matched in request.stop) == ("stop", True)
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
    context = request.input_ids
    for i, (token, found) in enumerate(zip(out.token_ids, out.logprobs, strict=True)):
        lp, best = srv.logprobs(context + out.token_ids[:i], token, 4)
        assert (found.logprob, found.top) == (lp, tuple(best))
    assert "stop" not in srv.attempts[0].params or srv.attempts[0].params["stop"] is None, "applied here"


async def test_cancelling_closes_the_request_on_the_server(qwen: HFTokenizer, qwen_path: str) -> None:
    for stream in (False, True):
        async with ProtocolServer(qwen, token_delay_s=0.01) as srv:
            engine = engine_on(srv, qwen_path, stream=stream)
            task = asyncio.ensure_future(engine.generate(req(prompt(qwen, 4), max_new_tokens=100000)))
            while not srv.active:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await engine.aclose()
            while srv.active:
                await asyncio.sleep(0.01)
        assert [a.cancelled for a in srv.attempts] == [True] and engine.stats.cancelled == 1
        assert len(srv.attempts[0].output_ids) < 100000


async def test_api_key_from_environment(qwen: HFTokenizer, qwen_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ProtocolServer(qwen, api_key="k-42") as srv:
        engine = engine_on(srv, qwen_path, http=replace(FAST, api_key_env="COLLAB_TEST_LLAMA_KEY"))
        monkeypatch.setenv("COLLAB_TEST_LLAMA_KEY", "k-42")
        manifest = await engine.open()
        assert (await engine.generate(req(prompt(qwen, 3)))).token_ids
        monkeypatch.setenv("COLLAB_TEST_LLAMA_KEY", "wrong")
        with pytest.raises(EngineError, match="401") as e:
            await engine.generate(req(prompt(qwen, 4)))
        await engine.aclose()
    assert not e.value.retryable and "k-42" not in json.dumps(manifest)
    assert manifest["servers"][0]["build"] == srv.version


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kinds", [*[(k,) for k in LLAMA_FAULTS], LLAMA_FAULTS], ids=[*LLAMA_FAULTS, "all"])
async def test_every_request_ends_once_under_faults(
    qwen: HFTokenizer, qwen_path: str, kinds: tuple[str, ...], stream: bool
) -> None:
    retries, n = 4, 24
    rate = 0.2 if len(kinds) == 1 else 0.8 / len(kinds)
    async with ProtocolServer(qwen, faults=dict.fromkeys(kinds, rate), fault_seed=11) as srv:
        engine = engine_on(srv, qwen_path, stream=stream, http=replace(FAST, retries=retries, timeout_s=0.5))
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=8, seed=i) for i in range(n)]
        calls = asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True)
        results = await asyncio.wait_for(calls, 60)
        await engine.aclose()
    assert {a.fault for a in srv.attempts} >= set(kinds)
    for request, result in zip(requests, results, strict=True):
        attempts = [a for a in srv.attempts if a.input_ids == request.input_ids]
        assert 1 <= len(attempts) <= retries + 1
        if isinstance(result, Completion):
            assert result.token_ids == expected(srv, request)
        else:
            assert isinstance(result, EngineError) and (len(attempts) == retries + 1 or attempts[-1].fault == "error")
    assert engine.stats.ok + engine.stats.failed == n
    assert engine.stats.retries == len(srv.attempts) - n


async def test_relay_on_the_protocol_server(qwen: HFTokenizer, qwen_path: str, tmp_path: Path) -> None:
    from collab.sim.runner import RunOptions, simulate

    async with ProtocolServer(qwen, paragraph_rate=0.0) as srv:
        config = {"kind": "llamacpp", "url": srv.url, "tokenizer": qwen_path, "backoff_s": 0.001}
        options = RunOptions(overrides=[f"engines.small={json.dumps(config)}"], out=tmp_path, limit=2, samples=3)
        result = await simulate(ROOT / "scenarios" / "relay.yaml", options)
    summary, tokens = result.summary, result.summary["tokens"]
    assert (summary["ok"], summary["failed"]) == (6, 0)
    assert tokens["requests_extending_previous"] == 1.0 and tokens["reported_over_ideal"] >= 0.99
