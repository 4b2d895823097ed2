"""The OpenAI-compatible engine (``/v1/completions`` with token ids) against the protocol test server."""

from __future__ import annotations

import asyncio
import json
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
from collab.engines.http.openai import OpenAIEngine
from collab.engines.tokenizers import HFTokenizer

FAST = {"backoff_s": 0.001, "health_timeout_s": 5}





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
    body = engine.payload(req([5, 6], temperature=0.6, top_p=0.95, top_k=20, seed=3, stop=["\n\n"], stop_token_ids=[9]))
    assert body == {
        "model": "org/m", "prompt": [5, 6], "max_tokens": 16, "temperature": 0.6, "top_p": 0.95, "n": 1,
        "skip_special_tokens": False, "spaces_between_special_tokens": False, "include_stop_str_in_output": True,
        "return_token_ids": True, "top_k": 20, "seed": 3, "stop": ["\n\n"], "stop_token_ids": [9],
    }  # fmt: skip
    assert not {"top_k", "seed", "stop", "stop_token_ids"} & set(engine.payload(req([5])))


async def test_generation_is_exact_and_reports_cache_hits(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, paragraph_rate=0.3) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model=srv.model_path, tokenizer=qwen_path, **FAST)
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
    assert engine.stats.retokenized == 0


async def test_eos_and_stop_token_ids(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, eos_rate=1.0) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, **FAST)
        eos = await engine.generate(req(prompt(qwen, 2)))
        await engine.aclose()
    assert (eos.finish_reason, eos.matched, eos.token_ids) == ("stop", qwen.eos_token_ids[0], [qwen.eos_token_ids[0]])
    async with ProtocolServer(qwen) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, **FAST)
        period = qwen.encode(".")[0]
        c = await engine.generate(req(prompt(qwen, 2), max_new_tokens=200, stop_token_ids=[period]))
        await engine.aclose()
    assert (c.finish_reason, c.matched, c.token_ids[-1]) == ("stop", period, period)


async def test_api_key_from_environment(qwen: HFTokenizer, qwen_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ProtocolServer(qwen, api_key="k-42") as srv:
        engine = OpenAIEngine(
            "oa", url=srv.url, model="m", tokenizer=qwen_path, api_key_env="COLLAB_TEST_OAI_KEY", **FAST
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


async def test_servers_without_token_ids_are_re_encoded(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, openai_token_ids=False) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, **FAST)
        request = req(prompt(qwen, 5), max_new_tokens=12)
        c = await engine.generate(request)
        await engine.aclose()
    assert c.text == qwen.decode(expected(srv, request)) and c.token_ids == qwen.encode(c.text)
    assert engine.stats.retokenized == 2, "the answer and the warm-up's"


@pytest.mark.parametrize("kinds", [*[(k,) for k in FAULTS], FAULTS], ids=[*FAULTS, "all"])
async def test_every_request_ends_once_under_faults(qwen: HFTokenizer, qwen_path: str, kinds: tuple[str, ...]) -> None:
    retries, n = 4, 30
    rate = 0.2 if len(kinds) == 1 else 0.8 / len(kinds)
    async with ProtocolServer(qwen, faults=dict.fromkeys(kinds, rate), fault_seed=11) as srv:
        engine = OpenAIEngine("oa", url=srv.url, model="m", tokenizer=qwen_path, retries=retries, timeout_s=0.5, **FAST)
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=8, seed=i) for i in range(n)]
        calls = asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True)
        results = await asyncio.wait_for(calls, 60)
        await engine.aclose()
    real = [a for a in srv.attempts if not a.rid.endswith("-warmup")]
    assert {a.fault for a in srv.attempts} >= set(kinds)
    for request, result in zip(requests, results):
        attempts = [a for a in real if a.input_ids == request.input_ids]
        assert 1 <= len(attempts) <= retries + 1
        if isinstance(result, Completion):
            assert result.token_ids == expected(srv, request)
        else:
            assert isinstance(result, EngineError) and (len(attempts) == retries + 1 or attempts[-1].fault == "error")
    assert engine.stats.ok + engine.stats.failed == n
    assert engine.stats.retries == len(real) - n
