"""The local engine: sampling, stops, end of sequence, seeds, scheduling, loading, the manifest."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch
from local_models import CharTokenizer, on_model, smol, tiny_engine, tiny_model

from collab.engines import build_engine
from collab.engines.base import EngineError, GenerateRequest
from collab.engines.local.engine import LocalEngine, locate, native_bfloat16, pick_dtype
from collab.engines.local.sampling import sample
from collab.scenario.schema import LocalEngineConfig

PROMPT = CharTokenizer().render_prompt("what is two plus three")


async def greedy(engine: LocalEngine, max_new_tokens: int = 40, **options: object) -> list[int]:
    completion = await engine.generate(GenerateRequest(PROMPT, max_new_tokens, temperature=0.0, **options))
    return completion.token_ids


async def test_max_new_tokens_ends_with_length() -> None:
    completion = await tiny_engine().generate(GenerateRequest(PROMPT, 17, temperature=0.0))
    assert completion.finish_reason == "length" and completion.matched is None
    assert len(completion.token_ids) == 17 and completion.prompt_tokens == len(PROMPT)
    assert completion.text == CharTokenizer().decode(completion.token_ids)


async def test_stop_strings_keep_the_completing_token() -> None:
    engine = tiny_engine()
    full = await greedy(engine)
    text = CharTokenizer().decode(full)
    stops = [text[20:23], text[9:11]]
    end = min(text.find(s) + len(s) for s in stops)  # one character per token
    completion = await engine.generate(GenerateRequest(PROMPT, 40, temperature=0.0, stop=stops))
    assert completion.finish_reason == "stop"
    assert completion.token_ids == full[:end]
    assert completion.text == text[:end] and completion.text.endswith(completion.matched)  # type: ignore[arg-type]
    assert completion.matched in stops


async def test_stop_token_ids_and_tokenizer_eos_are_included() -> None:
    full = await greedy(tiny_engine())
    token = full[7]
    end = full.index(token) + 1
    by_request = await tiny_engine().generate(GenerateRequest(PROMPT, 40, temperature=0.0, stop_token_ids=[token]))
    eos_engine = tiny_engine(tokenizer=CharTokenizer(eos_token_ids=[token]))
    by_eos = await eos_engine.generate(GenerateRequest(PROMPT, 40, temperature=0.0))
    for completion in (by_request, by_eos):
        assert completion.finish_reason == "stop" and completion.matched == token
        assert completion.token_ids == full[:end]


async def test_seeded_sampling_is_reproducible_and_cache_independent() -> None:
    cached, plain = tiny_engine(), tiny_engine(cache=False)

    async def draw(engine: LocalEngine, seed: int, **options: object) -> list[int]:
        request = GenerateRequest(PROMPT, 30, temperature=1.0, seed=seed, **options)  # type: ignore[arg-type]
        return (await engine.generate(request)).token_ids

    first = await draw(cached, 5)
    assert await draw(cached, 5) == first  # second time from the cache
    assert await draw(plain, 5) == first
    assert await draw(cached, 6) != first
    assert await draw(cached, 7, top_k=1) == await greedy(plain, 30)
    assert await draw(cached, 8, top_p=1e-9) == await greedy(plain, 30)


def test_sample_respects_top_k_and_top_p() -> None:
    logits = torch.log(torch.tensor([0.05, 0.5, 0.3, 0.15]))
    generator = torch.Generator().manual_seed(0)

    def draws(**options: object) -> set[int]:
        request = GenerateRequest([0], 1, **options)  # type: ignore[arg-type]
        return {sample(logits[None], [request], [generator])[0] for _ in range(300)}

    assert draws(temperature=0.0) == {1}
    assert draws(temperature=1.0) == {0, 1, 2, 3}
    assert draws(temperature=1.0, top_k=2) == {1, 2}
    assert draws(temperature=1.0, top_p=0.7) == {1, 2}  # 0.5 < 0.7, 0.5 + 0.3 covers it
    assert draws(temperature=1.0, top_k=2, top_p=0.6) == {1}  # top-p over the renormalised top 2: 0.625


def test_batched_sampling_draws_each_row_as_if_alone() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 3000) * 4
    settings = [{"temperature": 0.0}, {"temperature": 0.7, "top_p": 0.95}, {"temperature": 1.0},
                {"temperature": 1.0, "top_k": 40}, {"temperature": 0.9, "top_k": 300, "top_p": 0.9},
                {"temperature": 5.0, "top_p": 0.999}]  # a nucleus wider than the 256 candidates
    requests = [GenerateRequest([0], 1, **options) for options in settings]  # type: ignore[arg-type]

    def generators(seed: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(seed + row) for row in range(len(requests))]

    batched, alone = generators(1), generators(1)
    for _ in range(20):
        together = sample(logits, requests, batched)
        one_by_one = [sample(logits[row : row + 1], [requests[row]], [alone[row]])[0] for row in range(len(requests))]
        assert together == one_by_one
    assert sample(logits, requests, generators(1)) == sample(logits, requests, generators(1))
    assert sample(logits, requests, generators(1)) != sample(logits, requests, generators(2))


def test_sampling_follows_the_distribution() -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    for options in ({"temperature": 1.0}, {"temperature": 1.0, "top_k": 3}, {"temperature": 1.0, "top_p": 0.65}):
        request = GenerateRequest([0], 1, **options)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(0)
        counts = torch.bincount(torch.tensor([sample(probs.log()[None], [request], [generator])[0]
                                              for _ in range(4000)]), minlength=4).double()
        expected = probs.clone().double()
        expected[: 4 - int(options.get("top_k", 0) or (2 if "top_p" in options else 4))] = 0
        expected /= expected.sum()
        assert torch.allclose(counts / counts.sum(), expected, atol=0.03), (options, counts)


async def test_one_worker_thread_per_model_loads_and_serves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(seed=5)
    loaders: list[threading.Thread] = []

    def load(self: LocalEngine) -> tuple[object, CharTokenizer]:
        loaders.append(threading.current_thread())
        return model, CharTokenizer()

    monkeypatch.setattr(LocalEngine, "_load", load)
    first, second = LocalEngine("a", "m"), LocalEngine("b", "m", cache=False)
    await first.open()
    await second.open()  # the same model: it joins the first engine's thread
    worker = loaders[0]
    assert worker is not threading.current_thread() and worker.is_alive()
    assert await first.call(threading.current_thread) is worker is await second.call(threading.current_thread)
    assert not loaders[1].is_alive()  # the second loader found the model served and went
    done = await asyncio.gather(first.generate(GenerateRequest(PROMPT, 6, temperature=0.0)),
                                second.generate(GenerateRequest(PROMPT, 6, temperature=0.0)))
    assert done[0].token_ids == done[1].token_ids and len(done[0].token_ids) == 6
    assert first.stats.requests == second.stats.requests == 1 and second.radix is None
    await first.aclose()
    after = await second.generate(GenerateRequest(PROMPT, 3, temperature=0.0))
    assert worker.is_alive() and len(after.token_ids) == 3
    await second.aclose()
    assert not worker.is_alive()


async def test_event_loop_runs_while_the_model_works() -> None:
    engine = tiny_engine(tokenizer=CharTokenizer(eos_token_ids=[]))
    task = asyncio.create_task(engine.generate(GenerateRequest(PROMPT, 400, temperature=0.0)))
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.005)
        ticks += 1
    assert (await task).finish_reason == "length"
    assert ticks >= 5


async def test_cancelled_request_stops_and_the_engine_goes_on() -> None:
    engine = tiny_engine(tokenizer=CharTokenizer(eos_token_ids=[]))
    long = asyncio.create_task(engine.generate(GenerateRequest(PROMPT, 4000, temperature=0.0)))
    queued = asyncio.create_task(engine.generate(GenerateRequest(PROMPT, 4000, temperature=0.0)))
    await asyncio.sleep(0.3)
    long.cancel()
    queued.cancel()
    for task in (long, queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    completion = await engine.generate(GenerateRequest(PROMPT, 5, temperature=0.0))
    assert len(completion.token_ids) == 5
    assert engine.stats.decode_tokens < 1000  # the long request stopped early; the queued one never ran


async def test_bad_requests_raise_engine_errors() -> None:
    engine = tiny_engine()
    with pytest.raises(EngineError, match="n must be 1"):
        await engine.generate(GenerateRequest(PROMPT, 5, n=2))
    with pytest.raises(EngineError, match="context"):
        await engine.generate(GenerateRequest([1] * 5000, 5))
    with pytest.raises(EngineError, match="not open"):
        await LocalEngine("x", "x").generate(GenerateRequest(PROMPT, 5))


async def test_a_failing_request_leaves_the_engine_working() -> None:
    engine = tiny_engine()
    with pytest.raises(EngineError):
        await engine.generate(GenerateRequest([1, 2, 10_000], 5))  # an id outside the vocabulary
    assert len((await engine.generate(GenerateRequest(PROMPT, 5, temperature=0.0))).token_ids) == 5


async def test_closing_fails_requests_in_flight() -> None:
    engine = tiny_engine(tokenizer=CharTokenizer(eos_token_ids=[]))
    running = asyncio.create_task(engine.generate(GenerateRequest(PROMPT, 4000, temperature=0.0)))
    await asyncio.sleep(0.2)
    await engine.aclose()
    with pytest.raises(EngineError, match="closed"):
        await running
    with pytest.raises(EngineError, match="not open"):
        await engine.generate(GenerateRequest(PROMPT, 5))


async def test_models_without_reusable_kv_run_uncached() -> None:
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(vocab_size=CharTokenizer.EOS + 1, hidden_size=32, state_size=8, num_hidden_layers=2,
                         initializer_range=0.5)
    model = MambaForCausalLM(config).to(torch.float64).eval()
    expected: list[int] = []
    with torch.inference_mode():
        for _ in range(8):
            expected.append(int(model(input_ids=torch.tensor([PROMPT + expected])).logits[0, -1].argmax()))
    engine = on_model(model, CharTokenizer(eos_token_ids=[]))  # recurrent state: no prefix reuse
    assert engine.radix is None and not engine.describe()["cache"]["supported"]
    completions = await asyncio.gather(
        *(engine.generate(GenerateRequest(PROMPT, 8, temperature=0.0)) for _ in range(2)))
    assert [c.token_ids for c in completions] == [expected, expected]
    assert engine.stats.max_batch == 1


def test_model_locations(tmp_path: Path) -> None:
    file = tmp_path / "m.Q4.gguf"
    file.write_bytes(b"")
    assert locate(str(file)) == (str(tmp_path), "m.Q4.gguf")
    assert locate("owner/repo-GGUF/m.Q4.gguf") == ("owner/repo-GGUF", "m.Q4.gguf")
    assert locate("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    with pytest.raises(EngineError, match="no such file"):
        locate("missing.gguf")
    with pytest.raises(EngineError, match="unknown dtype"):
        pick_dtype("float33", torch.device("cpu"))
    assert pick_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native_bfloat16() else torch.float32)
    assert pick_dtype("auto", torch.device("cpu"), gguf=True) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu"), gguf=True) == torch.bfloat16


def test_scenario_config_builds_the_engine() -> None:
    config = LocalEngineConfig(kind="local", model="m.gguf", cache=False, cache_budget_mb=64, device="cpu")
    engine = build_engine("small", config)
    assert isinstance(engine, LocalEngine)
    assert (engine.name, engine.cache_enabled, engine.cache_budget_mb) == ("small", False, 64)


# ---------------------------------------------------------------------- the real SmolLM2 model


@pytest.fixture
def smol_engine(smol_gguf: Path) -> LocalEngine:
    return smol(smol_gguf)


@pytest.mark.model
async def test_real_model_manifest(smol_engine: LocalEngine) -> None:
    info = await smol_engine.open()  # already open: describes it again
    assert info["kind"] == "local" and info["architecture"] == "llama"
    assert info["device"] == "cpu" and info["dtype"] == "float32"  # a GGUF file: float32 is its fastest dtype
    assert info["dtype_requested"] == "auto" and " on cpu in float32" in info["note"]  # the progress line says
    assert info["cache"]["enabled"] and info["tokenizer"] == smol_engine.tokenizer.key
    assert {"transformers", "torch", "parameters"} <= set(info)


@pytest.mark.model
async def test_real_model_ends_with_eos_and_stop_strings(smol_engine: LocalEngine) -> None:
    tokenizer = smol_engine.tokenizer
    prompt = tokenizer.render_prompt("What is 2+3? Answer briefly.")
    done = await smol_engine.generate(GenerateRequest(prompt, 40, temperature=0.0))
    assert done.finish_reason == "stop" and done.matched in tokenizer.eos_token_ids
    assert done.token_ids[-1] == done.matched and done.text == tokenizer.decode(done.token_ids)
    stop = tokenizer.decode(done.token_ids[1:3])
    cut = await smol_engine.generate(GenerateRequest(prompt, 40, temperature=0.0, stop=[stop]))
    assert cut.finish_reason == "stop" and cut.matched == stop
    assert cut.token_ids == done.token_ids[: len(cut.token_ids)]
    assert stop in cut.text and stop not in tokenizer.decode(cut.token_ids[:-1])
    assert cut.cached_tokens == len(prompt) - 1


@pytest.mark.model
async def test_real_model_seeded_sampling(smol_engine: LocalEngine) -> None:
    prompt = smol_engine.tokenizer.render_prompt("Write a story about a cat.")

    async def draw(seed: int) -> list[int]:
        request = GenerateRequest(prompt, 10, temperature=0.8, top_p=0.95, top_k=50, seed=seed)
        return (await smol_engine.generate(request)).token_ids

    first = await draw(1)
    assert await draw(1) == first
    assert await draw(2) != first
