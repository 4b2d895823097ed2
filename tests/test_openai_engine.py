"""The OpenAI-compatible engine (``/v1/completions`` with token ids) against the protocol test server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from protocol_server import FAULTS, ProtocolServer

from collab.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerateRequest,
    RequestContext,
)
from collab.engines.http.client import HTTPSettings
from collab.engines.http.openai import OpenAIEngine
from collab.engines.tokenizers import HFTokenizer

FAST = HTTPSettings(backoff_s=0.001, health_timeout_s=5)



def prompt(qwen: HFTokenizer, i: int) -> list[int]:
    return qwen.render_prompt(f"Problem {i}: what is {i} + {i * 7}?")


def req(ids: list[int], episode: str = "ep", **kw: Any) -> GenerateRequest:
    kw.setdefault("max_new_tokens", 16)
    return GenerateRequest(list(ids), context=RequestContext(episode_id=episode), **kw)


def expected(server: ProtocolServer, request: GenerateRequest) -> list[int]:
    p = {"max_new_tokens": request.max_new_tokens, "stop": request.stop, "stop_token_ids": request.stop_token_ids,
         "sampling_seed": request.seed}  # fmt: skip
    return server.expected(request.input_ids, p)


def test_payload(qwen_path: str) -> None:
    engine = OpenAIEngine("oa", url="http://h:8000/v1/", model="org/m", tokenizer=qwen_path)
    assert engine.servers[0].url == "http://h:8000" and isinstance(engine, Engine)
    request = req([5, 6], temperature=0.6, top_p=0.95, top_k=20, seed=3, stop=["\n\n"], stop_token_ids=[9])
    body = engine.wire.payload(request)
    assert body == {
        "model": "org/m", "prompt": [5, 6], "max_tokens": 16, "temperature": 0.6, "top_p": 0.95, "n": 1,
        "skip_special_tokens": False, "spaces_between_special_tokens": False, "include_stop_str_in_output": True,
        "return_token_ids": True, "top_k": 20, "seed": 3, "stop": ["\n\n"], "stop_token_ids": [9],
    }  # fmt: skip
    assert not {"top_k", "seed", "stop", "stop_token_ids"} & set(engine.wire.payload(req([5])))


async def test_generation_is_exact_and_reports_cache_hits(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, paragraph_rate=0.3) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model=srv.model_path, tokenizer=qwen_path, http=FAST)
        manifest = await engine.open()
        ids = prompt(qwen, 1)
        first = req(ids, max_new_tokens=40, stop=["\n\n"], seed=1)
        a = await engine.generate(first)
        follow = req(ids + a.token_ids + qwen.encode(" So"), max_new_tokens=5, seed=2)
        b = await engine.generate(follow)
        await engine.aclose()
    assert manifest["served_models"] == [srv.model_path] and manifest["kind"] == "openai"
    assert a.token_ids == expected(srv, first) and a.text == qwen.decode(a.token_ids)
    assert (a.finish_reason, a.matched) == ("stop", "\n\n") and a.text.endswith("\n\n")
    assert (b.finish_reason, b.matched, len(b.token_ids)) == ("length", None, 5)
    assert b.prompt_tokens == len(follow.input_ids)
    assert b.cached_tokens == len(ids) + len(a.token_ids) - 1, "usage.prompt_tokens_details.cached_tokens"


async def test_eos_and_stop_token_ids(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, eos_rate=1.0) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, http=FAST)
        eos = await engine.generate(req(prompt(qwen, 2)))
        await engine.aclose()
    assert (eos.finish_reason, eos.matched, eos.token_ids) == ("stop", qwen.eos_token_ids[0], [qwen.eos_token_ids[0]])
    async with ProtocolServer(qwen) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, http=FAST)
        period = qwen.encode(".")[0]
        c = await engine.generate(req(prompt(qwen, 2), max_new_tokens=200, stop_token_ids=[period]))
        await engine.aclose()
    assert (c.finish_reason, c.matched, c.token_ids[-1]) == ("stop", period, period)


async def test_api_key_from_environment(qwen: HFTokenizer, qwen_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ProtocolServer(qwen, api_key="k-42") as srv:
        engine = OpenAIEngine(
            "oa", url=srv.url, model="m", tokenizer=qwen_path, http=replace(FAST, api_key_env="COLLAB_TEST_OAI_KEY")
        )
        monkeypatch.setenv("COLLAB_TEST_OAI_KEY", "k-42")
        manifest = await engine.open()
        assert (await engine.generate(req(prompt(qwen, 3)))).token_ids
        monkeypatch.setenv("COLLAB_TEST_OAI_KEY", "wrong")
        with pytest.raises(EngineError, match="401") as e:
            await engine.generate(req(prompt(qwen, 4)))
        with pytest.raises(EngineError, match="refused the API key"):
            await engine.open()
        await engine.aclose()
    assert not e.value.retryable and engine.stats.retries == 0
    assert "k-42" not in json.dumps(manifest) and manifest["api_key_env"] == "COLLAB_TEST_OAI_KEY"


async def test_servers_without_token_ids_are_refused_loudly(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, openai_token_ids=False) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, http=FAST)
        with pytest.raises(EngineError, match="returned no token ids") as e:
            await engine.generate(req(prompt(qwen, 5), max_new_tokens=12))
        await engine.aclose()
    assert not e.value.retryable and engine.stats.retries == 0


async def test_stop_strings_beyond_the_servers_cap_are_applied_here(qwen: HFTokenizer, qwen_path: str) -> None:
    stops = [" so", " we", " the", " it", " is", " and", " of"]
    requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=60, stop=stops[i % 3 :], seed=i) for i in range(8)]
    async with ProtocolServer(qwen, max_stop_strings=4) as strict, ProtocolServer(qwen) as lenient:
        capped = OpenAIEngine("oa", url=strict.url, model="m", tokenizer=qwen_path, http=FAST)
        reference = OpenAIEngine(
            "oa", url=lenient.url, model="m", tokenizer=qwen_path, max_stop_strings=None, http=FAST
        )
        got = [await capped.generate(r) for r in requests]
        want = [await reference.generate(r) for r in requests]
        uncapped = OpenAIEngine("oa", url=strict.url, model="m", tokenizer=qwen_path, max_stop_strings=None, http=FAST)
        with pytest.raises(EngineError, match="at most 4") as refused:
            await uncapped.generate(requests[0])
        for engine in (capped, reference, uncapped):
            await engine.aclose()
    assert not refused.value.retryable
    assert all(len(a.params["stop"] or []) <= 4 for a in strict.attempts)
    assert any(len(r.stop) > 4 and w.matched in r.stop[4:] for r, w in zip(requests, want, strict=True))
    for g, w in zip(got, want, strict=True):
        assert (g.token_ids, g.text, g.finish_reason, g.matched) == (w.token_ids, w.text, w.finish_reason, w.matched)


@pytest.mark.parametrize("fault", [None, "torn", "error"])
async def test_streamed_answers_are_exact(qwen: HFTokenizer, qwen_path: str, fault: str | None) -> None:
    faults = {fault: 0.3} if fault else {}
    async with ProtocolServer(qwen, faults=faults, fault_seed=5, paragraph_rate=0.2) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, stream=True, http=FAST)
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=30, stop=["\n\n"], seed=i) for i in range(6)]
        results = await asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True)
        await engine.aclose()
    streamed = [a for a in srv.attempts if not a.rid.endswith("-warmup")]
    assert streamed and all(a.path == "/v1/completions" for a in streamed)
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, EngineError):
            assert fault == "error" and not result.retryable
            continue
        assert isinstance(result, Completion) and result.token_ids == expected(srv, request)
        assert result.text == qwen.decode(result.token_ids) and result.prompt_tokens == len(request.input_ids)
    assert fault != "torn" or engine.stats.errors["torn"] > 0


async def test_cache_hits_are_reported_in_whole_blocks(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, block_size=16) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, http=FAST)
        configured = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, cache_block=8, http=FAST)
        assert (await engine.open())["cache_block"] == 16, "read from the metrics"
        assert (await configured.open())["cache_block"] == 8
        ids = prompt(qwen, 6)
        a = await engine.generate(req(ids, max_new_tokens=21))
        b = await engine.generate(req(ids + a.token_ids, max_new_tokens=3))
        for e in (engine, configured):
            await e.aclose()
    seen = len(ids) + len(a.token_ids) - 1
    assert b.cached_tokens == seen // 16 * 16 and b.cached_tokens % 16 == 0


def test_gguf_tokenizer(smol_gguf: Path) -> None:
    engine = OpenAIEngine("oa", url="http://h:1", model="smollm2", tokenizer=str(smol_gguf))
    assert engine.tokenizer.decode(engine.tokenizer.encode("Let me think.")) == "Let me think."
    assert engine.tokenizer.eos_token_ids


@pytest.mark.parametrize("kinds", [*[(k,) for k in FAULTS], FAULTS], ids=[*FAULTS, "all"])
async def test_every_request_ends_once_under_faults(qwen: HFTokenizer, qwen_path: str, kinds: tuple[str, ...]) -> None:
    retries, n = 4, 30
    rate = 0.2 if len(kinds) == 1 else 0.8 / len(kinds)
    async with ProtocolServer(qwen, faults=dict.fromkeys(kinds, rate), fault_seed=11) as srv:
        http = replace(FAST, retries=retries, timeout_s=0.5)
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, http=http)
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=8, seed=i) for i in range(n)]
        calls = asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True)
        results = await asyncio.wait_for(calls, 60)
        await engine.aclose()
    real = [a for a in srv.attempts if not a.rid.endswith("-warmup")]
    assert {a.fault for a in srv.attempts} >= set(kinds)
    for request, result in zip(requests, results, strict=True):
        attempts = [a for a in real if a.input_ids == request.input_ids]
        assert 1 <= len(attempts) <= retries + 1
        if isinstance(result, Completion):
            assert result.token_ids == expected(srv, request)
        else:
            assert isinstance(result, EngineError) and (len(attempts) == retries + 1 or attempts[-1].fault == "error")
    assert engine.stats.ok + engine.stats.failed == n
    assert engine.stats.retries == len(real) - n


# -- the runner on a server as strict as vLLM ----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


async def relay_on(server: ProtocolServer, qwen_path: str, out: Path, **engine: Any) -> Any:
    """The relay scenario (2 problems, 3 samples) on an openai engine pointed at ``server``."""
    from collab.sim.runner import RunOptions, simulate

    config = {"kind": "openai", "url": server.url, "model": "m", "tokenizer": qwen_path, "backoff_s": 0.001, **engine}
    options = RunOptions(overrides=[f"engines.small={json.dumps(config)}"], out=out, limit=2, samples=3)
    return await simulate(ROOT / "scenarios" / "relay.yaml", options)


async def test_relay_on_a_server_with_a_stop_cap_and_cache_blocks(
    qwen: HFTokenizer, qwen_path: str, tmp_path: Path
) -> None:
    async with ProtocolServer(qwen, max_stop_strings=4, block_size=32, paragraph_rate=0.0) as srv:
        result = await relay_on(srv, qwen_path, tmp_path)
    summary, tokens = result.summary, result.summary["tokens"]
    assert (summary["ok"], summary["failed"]) == (6, 0)
    assert any(a.params["max_new_tokens"] <= 64 and a.params["stop"] for a in srv.attempts), "alignment ran"
    assert tokens["requests_extending_previous"] == 1.0
    assert tokens["cached_ideal_blocks"] % 32 == 0 and tokens["cached_ideal_blocks"] < tokens["cached_ideal"]
    assert tokens["reported_over_ideal_blocks"] >= 0.99 and tokens["reported_over_ideal"] < 1.0


async def test_a_server_without_token_ids_fails_episodes_with_a_clear_error(
    qwen: HFTokenizer, qwen_path: str, tmp_path: Path
) -> None:
    async with ProtocolServer(qwen, openai_token_ids=False) as srv:
        result = await relay_on(srv, qwen_path, tmp_path, retries=0)
    summary = result.summary
    assert (summary["ok"], summary["failed"]) == (0, 6) and "max_turns" not in summary["end_reasons"]
    assert all("returned no token ids" in error for error in summary["failures"])
