"""Per-token log-probabilities on every engine: scripted profiles, both HTTP wire kinds, entropy."""

from __future__ import annotations

import math

import pytest
from protocol_server import ProtocolServer

from collab.engines.base import GenerateRequest, RequestContext
from collab.engines.http.client import HTTPSettings
from collab.engines.http.openai import OpenAIEngine
from collab.engines.http.sglang import SGLangEngine
from collab.engines.logprobs import TokenLogprob, top_entropy
from collab.engines.scripted import CONFIDENT, UNCERTAIN, ScriptedEngine

FAST = HTTPSettings(backoff_s=0.001, health_timeout_s=5)


def test_top_entropy_counts_the_missing_mass_as_one_outcome() -> None:
    assert top_entropy([math.log(0.5), math.log(0.5)]) == pytest.approx(math.log(2))
    assert top_entropy([0.0]) == 0.0
    lumped = -(0.5 * math.log(0.5) + 0.5 * math.log(0.5))
    assert top_entropy([math.log(0.5)]) == pytest.approx(lumped)
    assert TokenLogprob(-1.0, (math.log(0.25),) * 4).entropy == pytest.approx(math.log(4))


async def test_scripted_profile_marks_uncertain_words() -> None:
    engine = ScriptedEngine("s", script={"a": "So x is 4. Wait, maybe 5."}, uncertain=["Wait"])
    async with engine:
        request = GenerateRequest([1, 2], 64, context=RequestContext("e", "a", 0), logprobs=5)
        out = await engine.generate(request)
        plain = await engine.generate(GenerateRequest([1, 2], 64, context=RequestContext("f", "a", 0)))
    assert plain.logprobs is None
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
    start = "So x is 4. ".__len__()
    marks = "".join("U" if lp == UNCERTAIN else "c" for lp in out.logprobs)
    assert marks[:start] == "c" * start
    assert marks[start:start + 4] == "UUUU" and marks[start + 4] == "c"
    assert UNCERTAIN.entropy > 2 > CONFIDENT.entropy


async def test_scripted_continuation_follows_the_kept_tokens() -> None:
    """A ``chunk`` request continues from where the trace stands, not where the last answer ended."""
    engine = ScriptedEngine("s", script={"a": "abcdefghij"})
    async with engine:
        first = await engine.generate(GenerateRequest([0], 6, context=RequestContext("e", "a", 0)))
        kept = first.token_ids[:3]  # a cut discards "def"
        more = await engine.generate(GenerateRequest([0, *kept], 3, context=RequestContext("e", "a", 0, "chunk")))
    assert first.text == "abcdef" and more.text == "def"


@pytest.mark.parametrize("stream,incremental", [(False, False), (True, False), (True, True)])
async def test_sglang_logprobs(qwen, qwen_path: str, stream: bool, incremental: bool) -> None:
    async with ProtocolServer(qwen, incremental=incremental, stream_interval=3) as server:
        engine = SGLangEngine("sg", url=server.url, tokenizer=qwen_path, stream=stream, http=FAST)
        async with engine:
            ids = qwen.render_prompt("What is 2 + 2?")
            request = GenerateRequest(ids, 10, context=RequestContext("e", purpose="align"), logprobs=4)
            out = await engine.generate(request)
            body = engine.wire.payload(request, "r", stream=False, seeded=False)
            plain = await engine.generate(GenerateRequest(ids, 4, context=RequestContext("f", purpose="align")))
    assert body["return_logprob"] is True and body["top_logprobs_num"] == 4 and body["logprob_start_len"] == -1
    assert plain.logprobs is None
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids) == 10
    for i, (token, found) in enumerate(zip(out.token_ids, out.logprobs, strict=True)):
        chosen, best = server.logprobs(ids + out.token_ids[:i], token, 4)
        assert found == TokenLogprob(chosen, tuple(best))


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_logprobs(qwen, qwen_path: str, stream: bool) -> None:
    async with ProtocolServer(qwen, stream_interval=3) as server:
        engine = OpenAIEngine("oa", url=server.url + "/v1", model="test-org/test-model", tokenizer=qwen_path,
                              stream=stream, http=FAST)
        async with engine:
            ids = qwen.render_prompt("What is 3 + 3?")
            request = GenerateRequest(ids, 8, context=RequestContext("e"), logprobs=3)
            out = await engine.generate(request)
    assert engine.wire.payload(request, stream=False)["logprobs"] == 3
    assert out.logprobs is not None and len(out.logprobs) == 8
    entropies = []
    for i, (token, found) in enumerate(zip(out.token_ids, out.logprobs, strict=True)):
        chosen, best = server.logprobs(ids + out.token_ids[:i], token, 3)
        assert found.logprob == chosen and found.top == tuple(best)
        entropies.append(found.entropy)
    assert len(set(entropies)) > 1  # the server's profile varies with the context
