"""Every engine is an Engine: an async context manager that opens and closes, with counters for the summary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collab.engines.base import Engine, EngineLifecycle, RequestContext, Sampling, build_request
from collab.engines.local.engine import LocalEngine
from collab.engines.scripted import ScriptedEngine


def test_engines_satisfy_the_protocol() -> None:
    # mypy checks every engine against the protocol where build_engine returns it
    assert isinstance(ScriptedEngine("s"), Engine)
    local = LocalEngine("l", "some/model")
    assert local.replicas == 1 and set(local.counters()) >= {"prompt_tokens", "cached_tokens"}


def test_async_with_opens_and_closes() -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ScriptedEngine("s", script={"a": "Hi."}) as engine:
            request = build_request(engine.tokenizer, engine.tokenizer.encode("x"), 8, Sampling(),
                                    seed=1, context=RequestContext("e", "a"))
            completion = await engine.generate(request)
            assert completion.text.startswith("Hi.")
            return engine.info, engine.counters()

    info, counters = asyncio.run(go())
    assert info == {"kind": "scripted", "agents": ["a"]} and counters == {}


class _FailsToOpen(EngineLifecycle):
    def __init__(self) -> None:
        self.closed = False

    async def open(self) -> dict[str, Any]:
        raise RuntimeError("no weights")

    async def aclose(self) -> None:
        self.closed = True


def test_a_failed_open_still_closes() -> None:
    engine = _FailsToOpen()

    async def go() -> None:
        async with engine:
            pass

    with pytest.raises(RuntimeError, match="no weights"):
        asyncio.run(go())
    assert engine.closed


def test_requests_stop_at_the_tokenizers_end_of_sequence() -> None:
    tokenizer = ScriptedEngine("s").tokenizer
    request = build_request(tokenizer, [1, 2], 5, Sampling(0.5, 0.9, 40), seed=7, context=RequestContext(),
                            stop=["\n"])
    assert request.stop_token_ids == tokenizer.eos_token_ids and request.stop == ["\n"]
    assert (request.temperature, request.top_p, request.top_k, request.seed) == (0.5, 0.9, 40, 7)
