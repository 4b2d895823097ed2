"""The HTTP client's plumbing (retries, routing, warm-up, cancellation, stop strings) on an in-memory wire."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

import pytest
from fake_wire import FakeWire

from collab.engines.base import EngineError, GenerateRequest, RequestContext
from collab.engines.http.client import FAIL_LIMIT, HTTPEngine, HTTPSettings
from collab.engines.tokenizers import ByteTokenizer


def closed_urls(n: int) -> list[str]:
    """URLs of local ports nobody listens on (a health probe there fails at once)."""
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return [f"http://127.0.0.1:{p}" for p in ports]


def engine(wire: FakeWire, urls: list[str], max_stop_strings: int | None = None, **options: Any) -> HTTPEngine:
    settings = HTTPSettings(timeout_s=5.0, backoff_s=0.0, max_connections=8, health_timeout_s=1.0)
    http = replace(settings, **options)
    return HTTPEngine("fake", urls, wire=wire, tokenizer=ByteTokenizer(), http=http, max_stop_strings=max_stop_strings)


def req(episode: str = "e", purpose: str = "align", prompt: bytes = b"prompt", **kw: Any) -> GenerateRequest:
    kw.setdefault("max_new_tokens", 4)
    return GenerateRequest(list(prompt), context=RequestContext(episode_id=episode, purpose=purpose), **kw)


async def test_transient_faults_are_retried_then_given_up() -> None:
    (url,) = closed_urls(1)
    wire = FakeWire(faults={url: ["http_5xx", "torn", None]})
    e = engine(wire, [url])
    c = await e.generate(req())
    assert c.token_ids == list(b"one ") and (e.stats.retries, e.stats.attempts, e.stats.ok) == (2, 3, 1)
    assert dict(e.stats.errors) == {"http_5xx": 1, "torn": 1}
    await e.aclose()
    wire = FakeWire(faults={url: ["timeout"] * 5})
    e = engine(wire, [url], retries=2)
    with pytest.raises(EngineError, match="3 attempts") as failed:
        await e.generate(req())
    await e.aclose()
    assert failed.value.retryable and (e.stats.failed, len(wire.calls)) == (1, 3)
    assert len(wire.aborted) == 3, "a timed-out attempt is aborted on the server"


async def test_a_bad_request_is_not_retried() -> None:
    (url,) = closed_urls(1)
    wire = FakeWire(faults={url: ["http_4xx"]})
    e = engine(wire, [url])
    with pytest.raises(EngineError, match="1 attempt\\)") as failed:
        await e.generate(req())
    await e.aclose()
    assert not failed.value.retryable and len(wire.calls) == 1 and e.stats.retries == 0


async def test_episodes_stick_to_one_server() -> None:
    urls = closed_urls(3)
    wire = FakeWire()
    e = engine(wire, urls)
    for turn in range(3):
        await asyncio.gather(*(e.generate(req(f"ep{i}", prompt=b"p%d" % turn)) for i in range(60)))
    await e.aclose()
    where: dict[str, set[str]] = {}
    for call in wire.calls:
        where.setdefault(call.request.context.episode_id, set()).add(call.url)
    assert all(len(used) == 1 for used in where.values()) and len(where) == 60
    assert {next(iter(used)) for used in where.values()} == set(urls), "every server gets episodes"


async def test_episodes_move_off_a_server_that_is_down() -> None:
    urls = closed_urls(3)
    wire = FakeWire(down={urls[0]})
    e = engine(wire, urls, retries=FAIL_LIMIT + 1)
    results = await asyncio.gather(*(e.generate(req(f"ep{i}")) for i in range(30)))
    assert len(results) == 30 and e.stats.ok == 30 and e.stats.failed == 0
    assert e.stats.servers[urls[0]].marked_down >= 1
    moved = [c for c in wire.calls if c.url != urls[0] and c.request.context.episode_id in
             {d.request.context.episode_id for d in wire.calls if d.url == urls[0]}]  # fmt: skip
    assert moved, "the down server's episodes were answered elsewhere"
    await e.aclose()


async def test_first_turns_sharing_a_prompt_wait_for_one_warm_up() -> None:
    (url,) = closed_urls(1)
    wire = FakeWire()
    e = engine(wire, [url])
    await asyncio.gather(*(e.generate(req(f"ep{i}", purpose="turn")) for i in range(8)))
    await e.generate(req("ep0", purpose="turn", prompt=b"prompt one two"))
    await e.aclose()
    warmups = [c for c in wire.calls if c.warmup]
    assert len(warmups) == 1 and wire.calls[0].warmup and warmups[0].request.max_new_tokens == 1
    assert e.stats.warmups == 1 and len(wire.calls) == 1 + 8 + 1, "a later turn needs no warm-up"


async def test_cancellation_aborts_the_request() -> None:
    (url,) = closed_urls(1)
    wire = FakeWire(delay_s=30.0)
    e = engine(wire, [url])
    task = asyncio.create_task(e.generate(req()))
    await wire.sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await e.aclose()
    assert wire.aborted == [wire.calls[0].rid] and e.stats.cancelled == 1


async def test_stop_strings_beyond_the_cap_are_applied_on_the_answer() -> None:
    (url,) = closed_urls(1)
    wire = FakeWire(text="alpha beta. gamma")
    e = engine(wire, [url], max_stop_strings=2)
    c = await e.generate(req(max_new_tokens=40, stop=["x", "y", ". ", "gamma"]))
    await e.aclose()
    assert wire.calls[0].request.stop == ["x", "y"], "only as many as the server accepts"
    assert (c.text, c.finish_reason, c.matched) == ("alpha beta. ", "stop", ". ")
    assert c.token_ids == list(b"alpha beta. ")


@pytest.mark.parametrize(
    ("ideal", "seen", "prompt", "block", "expected"),
    [
        (100, 100, 120, 1, 99),  # the last token seen was sampled, never computed
        (100, 100, 120, 32, 96),  # whole blocks only
        (64, 64, 64, 32, 32),  # a prompt's last token is always computed
        (10, 40, 60, 32, 0),  # diverged early: less than a block
        (0, 0, 50, 32, 0),  # the episode's first request
    ],
)
def test_block_rounded_ideal(ideal: int, seen: int, prompt: int, block: int, expected: int) -> None:
    from collab.sim.requests import block_ideal

    assert block_ideal(ideal, seen, prompt, block) == expected
