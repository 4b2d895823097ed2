"""The SGLang engine against the protocol test server: wire format, streaming, faults, routing, cache."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from protocol_server import FAULTS, ProtocolServer, RadixTree, common_prefix

from collab.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerateRequest,
    RequestContext,
)
from collab.engines.http.client import HTTPSettings, RequestFailed, pool_size, sse_data
from collab.engines.http.sglang import SGLangEngine
from collab.engines.tokenizers import HFTokenizer

FAST = HTTPSettings(backoff_s=0.001, health_timeout_s=5)







def prompt(qwen: HFTokenizer, i: int) -> list[int]:
    return qwen.render_prompt(f"Problem {i}: what is {i} + {i * 7}?")


def req(ids: list[int], episode: str = "ep", **kw: Any) -> GenerateRequest:
    kw.setdefault("max_new_tokens", 16)
    return GenerateRequest(list(ids), context=RequestContext(episode_id=episode), **kw)


def params(engine: SGLangEngine, request: GenerateRequest) -> dict[str, Any]:
    return engine.wire.payload(request, "rid", stream=False, seeded=True)["sampling_params"]


def real(attempts: list[Any]) -> list[Any]:
    """The server's attempts without the engine's warm-up requests."""
    return [a for a in attempts if not a.rid.endswith("-warmup")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- wire format ---------------------------------------------------------------------------


def test_payload_sends_ids_and_explicit_sampling(qwen_path: str) -> None:
    engine = SGLangEngine("sg", url="127.0.0.1:30000/", tokenizer=qwen_path)
    request = req([1, 2, 3], temperature=0.6, top_p=0.95, stop=["\n\n"], stop_token_ids=[7], seed=5)
    body = engine.wire.payload(request, "r-0", stream=True, seeded=True)
    assert engine.servers[0].url == "http://127.0.0.1:30000"
    assert body == {
        "input_ids": [1, 2, 3],
        "rid": "r-0",
        "stream": True,
        "sampling_params": {
            "max_new_tokens": 16, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "skip_special_tokens": False,
            "spaces_between_special_tokens": False, "no_stop_trim": True, "stop": ["\n\n"], "stop_token_ids": [7],
            "sampling_seed": 5,
        },
    }  # fmt: skip
    plain = engine.wire.payload(req([1]), "r", stream=False, seeded=True)["sampling_params"]
    assert not {"stop", "stop_token_ids", "sampling_seed"} & set(plain)
    unseeded = engine.wire.payload(req([1], seed=5), "r", stream=False, seeded=False)
    assert "sampling_seed" not in unseeded["sampling_params"]
    assert "text" not in body
    assert isinstance(engine, Engine)


def test_urls_from_port_and_lists(qwen_path: str) -> None:
    assert [s.url for s in SGLangEngine("a", port=31000, tokenizer=qwen_path).servers] == ["http://127.0.0.1:31000"]
    both = SGLangEngine("b", url="http://h:1", urls=["http://h:2", "http://h:1/"], tokenizer=qwen_path)
    assert [s.url for s in both.servers] == ["http://h:2", "http://h:1"]
    with pytest.raises(ValueError, match="url"):
        SGLangEngine("c", tokenizer=qwen_path)
    with pytest.raises(ValueError, match="model"):
        SGLangEngine("d", port=1)


def test_meta_info_parsing_is_tolerant(qwen: HFTokenizer, qwen_path: str) -> None:
    engine = SGLangEngine("sg", url="http://x:1", tokenizer=qwen_path)
    ids = qwen.encode(" one two.")
    meta = {"prompt_tokens": 9, "completion_tokens": len(ids), "finish_reason": "length"}
    minimal = {"output_ids": ids, "meta_info": meta}
    c = engine.wire.parse(minimal, None)
    assert (c.finish_reason, c.cached_tokens, c.text, c.token_ids) == ("length", 0, " one two.", ids)
    abort = {"type": "abort", "message": "m"}
    aborted = {**minimal, "meta_info": {**meta, "finish_reason": abort, "cached_tokens": None}}
    assert engine.wire.parse(aborted, None).finish_reason == "abort"
    stop = {**minimal, "meta_info": {**meta, "finish_reason": {"type": "stop", "matched": 13}}}
    assert (engine.wire.parse(stop, None).finish_reason, engine.wire.parse(stop, None).matched) == ("stop", 13)
    unfinished = {"output_ids": ids, "meta_info": {**meta, "finish_reason": None}}
    for broken in ({"output_ids": ids}, unfinished, [minimal]):
        with pytest.raises(RequestFailed) as e:
            engine.wire.parse(broken, None)
        assert e.value.kind == "bad_response" and e.value.retryable
    with pytest.raises(EngineError, match="output_ids") as e:
        engine.wire.parse({"text": "x", "meta_info": meta}, None)
    assert not e.value.retryable


async def test_sse_lines_of_any_size_and_split() -> None:
    big = json.dumps({"output_ids": list(range(60000))}).encode()
    body = b"data: " + big + b"\n\n: comment\r\ndata: {\"a\": 1}\r\n\ndata: [DONE]"

    class Content:
        async def iter_any(self) -> Any:
            for i in range(0, len(body), 7001):
                yield body[i : i + 7001]

    class Response:
        content = Content()

    got = [d async for d in sse_data(Response())]  # type: ignore[arg-type]
    assert got == [big, b'{"a": 1}', b"[DONE]"]


def test_pool_respects_file_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert pool_size(10**9) <= max(1, soft // 2)
    assert pool_size(8) == min(8, max(1, soft // 2))


def test_the_test_servers_radix_tree() -> None:
    tree = RadixTree()
    tree.insert([1, 2, 3, 4])
    tree.insert([1, 2, 5])
    tree.insert([1, 2, 3, 4, 6, 7])
    assert [tree.match(ids) for ids in ([1, 2, 3, 4, 6, 7, 8], [1, 2, 5, 9], [1, 2, 9], [2], [])] == [6, 3, 2, 0, 0]
    assert tree.tokens == 7
    assert common_prefix(list(range(1000)), [*list(range(777)), 0]) == 777


# -- startup ---------------------------------------------------------------------------------


async def test_open_waits_for_health_and_describes_servers(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, starting_health_checks=3) as srv:
        engine = SGLangEngine("sg", url=srv.url, model="org/model", tokenizer=qwen_path, http=FAST)
        manifest = await engine.open()
        await engine.aclose()
    assert srv.starting_health_checks == 0
    assert manifest["kind"] == "sglang" and manifest["urls"] == [srv.url] and manifest["model"] == "org/model"
    info = manifest["servers"][0]
    assert info["version"] == srv.version and info["model_path"] == srv.model_path
    assert (info["radix_cache"], info["schedule_policy"], info["page_size"]) == (True, "fcfs", 1)


async def test_open_falls_back_to_older_info_endpoints(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, legacy_info=True) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        info = (await engine.open())["servers"][0]
        await engine.aclose()
    assert info["version"] == srv.version and info["weight_version"] == "default"


async def test_open_gives_a_clear_error_when_no_server_comes_up(qwen_path: str) -> None:
    port = free_port()
    engine = SGLangEngine("sg", port=port, tokenizer=qwen_path, http=HTTPSettings(health_timeout_s=0.5))
    with pytest.raises(EngineError, match=rf"no healthy server at http://127.0.0.1:{port}/health after 0.5s") as e:
        await engine.open()
    await engine.aclose()
    assert not e.value.retryable and "sglang.launch_server" in str(e.value)


async def test_api_key_is_read_from_the_environment_and_never_recorded(
    qwen: HFTokenizer, qwen_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ProtocolServer(qwen, api_key="sekret-123") as srv:
        http = replace(FAST, api_key_env="COLLAB_TEST_SGLANG_KEY")
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=http)
        monkeypatch.setenv("COLLAB_TEST_SGLANG_KEY", "sekret-123")
        manifest = await engine.open()
        assert (await engine.generate(req(prompt(qwen, 1)))).token_ids
        monkeypatch.delenv("COLLAB_TEST_SGLANG_KEY")
        with pytest.raises(EngineError, match="COLLAB_TEST_SGLANG_KEY is not set") as e:
            await engine.generate(req(prompt(qwen, 2)))
        await engine.aclose()
    assert not e.value.retryable
    assert "sekret" not in json.dumps(manifest) + json.dumps(engine.stats.as_dict())


# -- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "incremental", "interval"),
    [(False, False, 1), (True, False, 1), (True, True, 1), (True, False, 3), (True, True, 4)],
)
async def test_output_is_exact_in_every_mode(
    qwen: HFTokenizer, qwen_path: str, stream: bool, incremental: bool, interval: int
) -> None:
    async with ProtocolServer(qwen, incremental=incremental, stream_interval=interval) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=stream, http=FAST)
        await engine.open()
        for i, max_new in enumerate((1, 7, 40)):
            ids = prompt(qwen, i)
            request = req(ids, episode=f"e{i}", max_new_tokens=max_new, seed=i)
            c = await engine.generate(request)
            expected = srv.expected(ids, params(engine, request))
            assert c.token_ids == expected and c.text == qwen.decode(expected)
            assert (c.prompt_tokens, c.server) == (len(ids), srv.url)
            assert c.finish_reason in ("stop", "length") and c.latency_s > 0
        await engine.aclose()


async def test_stop_strings_stop_ids_eos_and_length(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, paragraph_rate=0.3) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        ids = prompt(qwen, 3)
        c = await engine.generate(req(ids, max_new_tokens=200, stop=["\n\n"]))
        assert (c.finish_reason, c.matched) == ("stop", "\n\n") and c.text.endswith("\n\n")
        period = qwen.encode(".")[0]
        c = await engine.generate(req(ids, max_new_tokens=200, stop_token_ids=[period], seed=1))
        assert (c.finish_reason, c.matched, c.token_ids[-1]) == ("stop", period, period)
        c = await engine.generate(req(ids, max_new_tokens=5, seed=2))
        assert (c.finish_reason, c.matched, len(c.token_ids)) == ("length", None, 5)
        await engine.aclose()
    async with ProtocolServer(qwen, eos_rate=1.0) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        c = await engine.generate(req(ids))
        await engine.aclose()
    assert (c.finish_reason, c.matched, c.token_ids) == ("stop", qwen.eos_token_ids[0], [qwen.eos_token_ids[0]])
    assert c.text == "<|endoftext|>"  # special tokens are kept


@pytest.mark.parametrize("stream", [False, True])
async def test_output_ids_overlapping_the_prompt_are_trimmed(qwen: HFTokenizer, qwen_path: str, stream: bool) -> None:
    async with ProtocolServer(qwen, faults={"overlap": 1.0}) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=stream, http=FAST)
        ids = prompt(qwen, 4)
        request = req(ids, max_new_tokens=12)
        c = await engine.generate(request)
        await engine.aclose()
    assert c.token_ids == srv.expected(ids, params(engine, request))
    assert engine.stats.trimmed_output_ids >= 1


@pytest.mark.parametrize("deterministic", [True, False])
async def test_seeds_go_to_servers_that_apply_them(qwen: HFTokenizer, qwen_path: str, deterministic: bool) -> None:
    async with ProtocolServer(qwen, deterministic=deterministic) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        manifest = await engine.open()
        await engine.generate(req(prompt(qwen, 1), seed=42))
        await engine.aclose()
    assert manifest["servers"][0]["enable_deterministic_inference"] is deterministic
    assert [a.params.get("sampling_seed") for a in real(srv.attempts)] == [42 if deterministic else None]


async def test_bad_request_is_not_retried_and_says_why(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, context_length=64) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        with pytest.raises(EngineError, match="context length") as e:
            await engine.generate(req(prompt(qwen, 1), max_new_tokens=100))
        await engine.aclose()
    assert not e.value.retryable
    assert len(real(srv.attempts)) == 0 and engine.stats.retries == 0 and engine.stats.failed == 1


async def test_error_event_mid_stream_is_not_retried(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, faults={"error": 1.0}) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=True, http=FAST)
        with pytest.raises(EngineError, match="injected error") as e:
            await engine.generate(req(prompt(qwen, 1)))
        await engine.aclose()
    assert not e.value.retryable and len(real(srv.attempts)) == 1


async def test_n_other_than_one_is_refused(qwen_path: str) -> None:
    engine = SGLangEngine("sg", url="http://x:1", tokenizer=qwen_path)
    with pytest.raises(EngineError, match="one completion"):
        await engine.generate(req([1], n=2))


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kinds", [*[(k,) for k in FAULTS], FAULTS], ids=[*FAULTS, "all"])
async def test_every_request_ends_once_under_faults(
    qwen: HFTokenizer, qwen_path: str, kinds: tuple[str, ...], stream: bool
) -> None:
    """20 % faults of one kind (or 80 % over all kinds): each request gets its exact answer or one
    EngineError, after at most retries+1 attempts, and no attempt follows a success."""
    retries, n = 4, 40
    rate = 0.2 if len(kinds) == 1 else 0.8 / len(kinds)
    async with ProtocolServer(qwen, faults=dict.fromkeys(kinds, rate), fault_seed=7) as srv:
        engine = SGLangEngine(
            "sg", url=srv.url, tokenizer=qwen_path, stream=stream, http=replace(FAST, retries=retries, timeout_s=0.5)
        )
        await engine.open()
        requests = [req(prompt(qwen, i), episode=f"e{i}", max_new_tokens=8, seed=i) for i in range(n)]
        calls = asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True)
        results = await asyncio.wait_for(calls, 60)
        await engine.aclose()
    by_input: dict[tuple[int, ...], list[Any]] = defaultdict(list)
    for a in real(srv.attempts):
        by_input[tuple(a.input_ids)].append(a)
    assert {a.fault for a in srv.attempts} >= set(kinds), "every fault kind was injected"
    for request, result in zip(requests, results, strict=False):
        attempts = by_input[tuple(request.input_ids)]
        assert 1 <= len(attempts) <= retries + 1
        assert all(a.fault not in (None, "overlap") for a in attempts[:-1]), "no retry after a success"
        if isinstance(result, Completion):
            assert attempts[-1].fault in (None, "overlap")
            assert result.token_ids == srv.expected(request.input_ids, params(engine, request))
        else:
            assert isinstance(result, EngineError), result
            assert attempts[-1].fault not in (None, "overlap")
            assert len(attempts) == retries + 1 or attempts[-1].fault == "error"
    stats = engine.stats
    assert stats.ok + stats.failed == stats.requests == n
    assert stats.ok == sum(isinstance(r, Completion) for r in results)
    assert stats.retries == len(real(srv.attempts)) - n


@pytest.mark.parametrize("stream", [False, True])
async def test_cancellation_aborts_the_request_on_the_server(qwen: HFTokenizer, qwen_path: str, stream: bool) -> None:
    async with ProtocolServer(qwen, token_delay_s=0.01) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=stream, http=FAST)
        task = asyncio.ensure_future(engine.generate(req(prompt(qwen, 1), max_new_tokens=10_000)))
        while not any(a.finish is None for a in real(srv.attempts)) or srv.active == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rid = real(srv.attempts)[0].rid
        for _ in range(200):
            if rid in srv.aborted:
                break
            await asyncio.sleep(0.01)
        await engine.aclose()
    assert rid in srv.aborted
    assert engine.stats.cancelled == 1 and engine.stats.ok == 0


async def test_idle_keepalive_resets_are_tolerated(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, keepalive_timeout=0.05) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        for i in range(4):
            assert (await engine.generate(req(prompt(qwen, i), max_new_tokens=4))).token_ids
            await asyncio.sleep(0.1)
        await engine.aclose()
    assert engine.stats.failed == 0


# -- routing, warm-up, cache -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_append_only_episodes_extend_their_previous_request_and_hit_the_cache(
    qwen: HFTokenizer, qwen_path: str, stream: bool
) -> None:
    """50 episodes (10 problems x 5 samples) x 4 turns on two servers, each turn = trace so far + new tokens."""
    servers = [ProtocolServer(qwen), ProtocolServer(qwen)]
    for s in servers:
        await s.start()
    engine = SGLangEngine("sg", urls=[s.url for s in servers], tokenizer=qwen_path, stream=stream, http=FAST)
    await engine.open()
    injected = qwen.encode(" Wait, let me check.")
    records: list[dict[str, Any]] = []

    async def episode(problem: int, sample: int) -> None:
        ids, seen, where = prompt(qwen, problem), [], None
        for turn in range(4):
            request = GenerateRequest(ids, 24, temperature=0.6, seed=sample * 100 + turn,
                                      context=RequestContext(f"p{problem}s{sample}", "agent", turn))  # fmt: skip
            c = await engine.generate(request)
            assert where in (None, c.server), "an episode stays on its server"
            where = c.server
            records.append({"episode": (problem, sample), "problem": problem, "turn": turn, "server": c.server,
                            "ids": ids, "out": c.token_ids, "cached": c.cached_tokens,
                            "ideal": common_prefix(ids, seen)})  # fmt: skip
            seen = ids + c.token_ids
            ids = seen + injected

    await asyncio.gather(*(episode(p, s) for p in range(10) for s in range(5)))
    await engine.aclose()
    for s in servers:
        await s.stop()
    assert len(records) == 200 and engine.stats.failed == 0
    assert {r["server"] for r in records} == {s.url for s in servers}, "episodes spread over both servers"
    received: dict[str, dict[tuple[int, ...], list[Any]]] = {s.url: defaultdict(list) for s in servers}
    for s in servers:
        for a in real(s.attempts):
            received[s.url][tuple(a.input_ids)].append(a.output_ids)
    previous: dict[Any, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["turn"]):
        # the server got exactly these ids, and the engine returned what the server generated
        assert r["out"] in received[r["server"]][tuple(r["ids"])]
        if r["turn"]:
            before = previous[r["episode"]]
            assert r["server"] == before["server"]
            assert r["ids"][: len(before["ids"]) + len(before["out"])] == before["ids"] + before["out"]
        previous[r["episode"]] = r
    later = [r for r in records if r["turn"]]
    assert sum(r["cached"] for r in later) >= 0.95 * sum(r["ideal"] for r in later)
    first = [r for r in records if not r["turn"]]
    assert all(r["cached"] == len(r["ids"]) - 1 for r in first), "the warm-up cached every shared prompt"
    for s in servers:
        problems_here = {r["problem"] for r in first if r["server"] == s.url}
        assert len([a for a in s.attempts if a.rid.endswith("-warmup")]) == len(problems_here)
    assert engine.stats.warmups == sum(len({r["problem"] for r in first if r["server"] == s.url}) for s in servers)


async def test_rollouts_sharing_a_prefix_wait_for_one_warmup(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, token_delay_s=0.002) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, http=FAST)
        ids = prompt(qwen, 5) + qwen.encode(" Let me think. First, seven times five is thirty-five.")
        rollout = RequestContext("ep", purpose="rollout")
        batch = [GenerateRequest(ids, 8, seed=k, context=rollout) for k in range(8)]
        first = await asyncio.gather(*(engine.generate(r) for r in batch))
        second = await asyncio.gather(*(engine.generate(r) for r in batch))
        await engine.aclose()
    assert len([a for a in srv.attempts if a.rid.endswith("-warmup")]) == 1
    assert all(c.cached_tokens == len(ids) - 1 for c in first + second)
    assert engine.stats.warmups == 1 and engine.stats.warmup_prefill_tokens == len(ids)


async def test_episodes_move_off_a_dead_server(qwen: HFTokenizer, qwen_path: str) -> None:
    a, b = ProtocolServer(qwen), ProtocolServer(qwen)
    await a.start()
    await b.start()
    engine = SGLangEngine("sg", urls=[a.url, b.url], tokenizer=qwen_path, http=replace(FAST, retries=6))
    episodes = [f"ep{i}" for i in range(20)]
    first = await asyncio.gather(*(engine.generate(req(prompt(qwen, i), e)) for i, e in enumerate(episodes)))
    on_b = {e for e, c in zip(episodes, first, strict=False) if c.server == b.url}
    assert on_b and len(on_b) < len(episodes)
    await b.stop()
    second = await asyncio.gather(*(engine.generate(req(prompt(qwen, 100 + i), e)) for i, e in enumerate(episodes)))
    third = await asyncio.gather(*(engine.generate(req(prompt(qwen, 200 + i), e)) for i, e in enumerate(episodes)))
    await engine.aclose()
    await a.stop()
    assert all(c.server == a.url for c in second + third)
    assert engine.stats.servers[b.url].marked_down == 1 and engine.stats.failed == 0
    assert engine.stats.errors["connection"] <= len(on_b) * 2, "retries stop once the server is marked down"


# -- scale -----------------------------------------------------------------------------------


async def test_a_thousand_concurrent_streams(qwen: HFTokenizer, qwen_path: str) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    peak = before
    async with ProtocolServer(qwen, token_delay_s=0.005) as srv:
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=True, http=replace(FAST, timeout_s=60))
        requests = [req(prompt(qwen, i), episode="load", max_new_tokens=6, seed=i) for i in range(1000)]
        done = asyncio.ensure_future(asyncio.gather(*(engine.generate(r) for r in requests)))
        while not done.done():
            peak = max(peak, open_fds())
            await asyncio.sleep(0.02)
        results = done.result()
        await engine.aclose()
    assert all(len(c.token_ids) == 6 or c.finish_reason == "stop" for c in results)
    assert engine.stats.ok == 1000 and engine.stats.failed == 0
    assert srv.max_active >= 100, "the requests really were concurrent"
    assert peak < soft
    assert open_fds() <= before + 5, "no sockets leak"


async def test_the_pool_bounds_connections(qwen: HFTokenizer, qwen_path: str) -> None:
    async with ProtocolServer(qwen, token_delay_s=0.002) as srv:
        http = replace(FAST, max_connections=16)
        engine = SGLangEngine("sg", url=srv.url, tokenizer=qwen_path, stream=True, http=http)
        requests = [req(prompt(qwen, i), episode="load", max_new_tokens=4, seed=i) for i in range(200)]
        await asyncio.gather(*(engine.generate(r) for r in requests))
        await engine.aclose()
    assert engine.stats.ok == 200 and 1 < srv.max_active <= 16


# -- the runner on SGLang servers ------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


async def relay_on(servers: list[ProtocolServer], qwen_path: str, out: Path, problems: int, **engine: Any) -> Any:
    """The relay scenario (5 samples per problem) on an sglang engine pointed at ``servers``."""
    from collab.sim.runner import RunOptions, simulate

    config = {"kind": "sglang", "urls": [s.url for s in servers], "tokenizer": qwen_path, "backoff_s": 0.001, **engine}
    overrides = [f"engines.small={json.dumps(config)}"]
    options = RunOptions(overrides=overrides, out=out, limit=problems, samples=5, concurrency=50)
    return await simulate(ROOT / "scenarios" / "relay.yaml", options)


async def test_relay_scenario_extends_every_request_and_hits_the_cache(
    qwen: HFTokenizer, qwen_path: str, tmp_path: Path
) -> None:
    from collab.log.store import RunStore

    servers = [ProtocolServer(qwen), ProtocolServer(qwen)]
    for s in servers:
        await s.start()
    result = await relay_on(servers, qwen_path, tmp_path, problems=10)
    for s in servers:
        await s.stop()
    tokens = result.summary["tokens"]
    assert (result.summary["episodes"], result.summary["ok"]) == (50, 50)
    assert tokens["requests_extending_previous"] == 1.0 and tokens["reported_over_ideal"] >= 0.95
    records = RunStore(result.path).episodes()
    where = {e: {span.server for span in r.spans if span.type == "turn"} for e, r in records.items()}
    assert all(len(servers_used) == 1 for servers_used in where.values()), "each episode stays on one server"
    assert {next(iter(s)) for s in where.values()} == {s.url for s in servers}
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert [info["url"] for info in manifest["engines"]["small"]["servers"]] == [s.url for s in servers]


async def test_relay_scenario_under_faults_ends_every_episode_once(
    qwen: HFTokenizer, qwen_path: str, tmp_path: Path
) -> None:
    from collab.log.store import RunStore

    server = ProtocolServer(qwen, faults=dict.fromkeys(FAULTS, 0.025), fault_seed=3)
    await server.start()
    result = await relay_on([server], qwen_path, tmp_path, problems=4, timeout_s=0.5)
    await server.stop()
    ends = [e for e in RunStore(result.path).events() if e.type == "episode.end"]
    assert len(ends) == len({e.episode_id for e in ends}) == 20
    assert result.summary["ok"] + result.summary["failed"] == 20 and result.summary["ok"] > 0
    assert all(e.error and "engine small" in e.error for e in ends if e.status == "failed")
    assert {a.fault for a in server.attempts} >= set(FAULTS)


async def test_api_key_never_reaches_the_run_folder(
    qwen: HFTokenizer, qwen_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-do-not-log-4a1f9c"
    monkeypatch.setenv("COLLAB_TEST_RUN_KEY", secret)
    async with ProtocolServer(qwen, api_key=secret) as srv:
        result = await relay_on([srv], qwen_path, tmp_path, problems=2, api_key_env="COLLAB_TEST_RUN_KEY")
    assert result.summary["ok"] == 10
    for path in result.path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "COLLAB_TEST_RUN_KEY" in (result.path / "scenario.yaml").read_text()
