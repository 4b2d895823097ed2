"""The radix prefix KV cache: the tree on synthetic tensors, then greedy equivalence on real engines."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch
from local_models import episode, on_model, smol, tiny_engine

from collab.engines.local.batch import Batch
from collab.engines.local.engine import LocalEngine
from collab.engines.local.radix import RadixCache

LAYERS, HEADS, DIM = 2, 2, 4
PER_TOKEN = 2 * LAYERS * HEADS * DIM * 8  # float64 K and V per token


def fake_kv(tokens: list[int]) -> tuple[torch.Tensor, ...]:
    """K/V that depend on the whole prefix, like real ones: position i holds a hash of tokens[:i+1]."""
    prefix = torch.tensor([hash(tuple(tokens[: i + 1])) % 1000003 for i in range(len(tokens))], dtype=torch.float64)
    return tuple((prefix + j).view(1, 1, -1, 1).expand(1, HEADS, -1, DIM).contiguous() for j in range(2 * LAYERS))


def check(tree: RadixCache, tokens: list[int]) -> int:
    """Match ``tokens`` and verify the K/V handed out; returns the matched length."""
    match = tree.match(tokens)
    if match.length:
        kv = [torch.cat([part[i] for part in match.parts], dim=-2) for i in range(2 * LAYERS)]
        expected = fake_kv(tokens[: match.length])
        assert all(torch.equal(a, b) for a, b in zip(kv, expected, strict=True))
    tree.release(match)
    return match.length


def test_longest_prefix_and_branches() -> None:
    tree = RadixCache(1 << 20)
    a = [1, 2, 3, 4, 5, 6]
    b = [1, 2, 3, 9, 9]
    assert tree.insert(a, fake_kv(a)) == 6
    assert check(tree, [1, 2, 3, 4, 7]) == 4
    assert tree.insert(b, fake_kv(b)) == 2  # splits a's edge after [1, 2, 3]
    assert check(tree, [*a, 8]) == 6
    assert check(tree, b) == 5
    assert check(tree, [1, 2, 3, 9, 1]) == 4
    assert check(tree, [2, 1]) == 0
    assert tree.insert(a[:4], fake_kv(a[:4])) == 0  # already there: nothing copied
    assert tree.tokens == 8 and tree.bytes == 8 * PER_TOKEN == tree.resident_bytes()


def test_tree_owns_its_tensors() -> None:
    tree = RadixCache(1 << 20)
    tokens = [5, 6, 7, 8]
    source = fake_kv(tokens)
    tree.insert(tokens, source)
    for t in source:
        t.zero_()  # the request's working cache is reused or mutated in place
    match = tree.match(tokens)
    batch = Batch(None, LAYERS, 4)  # type: ignore[arg-type]  # no forward pass: only slots
    slot = batch.open(match.parts)  # the handed-out views are copied into the request's slot
    tree.release(match)
    for t in batch.kv(slot):
        assert t.shape[-2] == len(tokens)
        t.fill_(-1.0)  # and the slot is written in place
    assert check(tree, tokens) == 4


def test_lru_eviction_spares_recent_and_locked() -> None:
    tree = RadixCache(12 * PER_TOKEN)
    old, recent, new = [1] * 4, [2] * 4, [3] * 4
    tree.insert(old, fake_kv(old))
    tree.insert(recent, fake_kv(recent))
    held = tree.match(old)  # in use by a running request: must survive
    tree.insert(new, fake_kv(new))  # fits exactly
    tree.insert([4] * 4, fake_kv([4] * 4))  # needs one eviction: `recent` is the oldest unlocked leaf
    assert check(tree, recent) == 0
    assert check(tree, old) == 4 and check(tree, new) == 4
    tree.release(held)
    assert tree.evicted_nodes == 1 and tree.bytes <= tree.budget_bytes


def test_partial_insert_when_budget_is_short() -> None:
    tree = RadixCache(5 * PER_TOKEN)
    tokens = list(range(1, 9))
    assert tree.insert(tokens, fake_kv(tokens)) == 5
    assert check(tree, tokens) == 5
    assert tree.peak_bytes == 5 * PER_TOKEN


def test_random_workload_stays_exact_and_under_budget() -> None:
    rng = random.Random(7)
    tree = RadixCache(300 * PER_TOKEN)
    stems = [[rng.randrange(4) for _ in range(30)] for _ in range(3)]
    for _ in range(300):
        seq = rng.choice(stems)[: rng.randrange(1, 30)] + [rng.randrange(6) for _ in range(rng.randrange(1, 40))]
        held = tree.match(seq) if rng.random() < 0.3 else None
        tree.insert(seq, fake_kv(seq))
        if held is not None:
            tree.release(held)
        assert check(tree, seq[: rng.randrange(1, len(seq) + 1)]) >= 0
        assert tree.bytes == tree.resident_bytes() <= tree.budget_bytes
    assert tree.evicted_nodes > 0
    assert all(node.refs == 0 for node in tree._nodes())


# ---------------------------------------------------------------------- engines

SCRIPTS: dict[str, tuple[str, list[int | str]]] = {
    "a": ("what is two plus three", [12, " wait", 12, 12]),
    "b": ("what is two plus three", [12, " no", 12]),  # shares a's prompt and first turn, then diverges
    "c": ("name a prime", [12, 12]),
}
SMOL_SCRIPTS: dict[str, tuple[str, list[int | str]]] = {
    "a": ("Write a story about a cat.", [8, " Wait", 8, 8]),
    "b": ("Write a story about a cat.", [8, " No", 8]),
    "c": ("Name three prime numbers.", [8, 8]),
}


@pytest.fixture(params=["tiny", pytest.param("smol", marks=pytest.mark.model)])
def model(request: pytest.FixtureRequest) -> tuple[LocalEngine, dict[str, tuple[str, list[int | str]]], int]:
    """``(engine whose model and tokenizer to share, episode scripts, per-token cache bytes)``."""
    if request.param == "tiny":
        return tiny_engine(), SCRIPTS, 2 * 2 * 2 * 16 * 8
    base = smol(request.getfixturevalue("smol_gguf"))
    return base, SMOL_SCRIPTS, 30 * 2 * 3 * 64 * 4


def twin(base: LocalEngine, *, cache: bool, budget_mb: float = 512) -> LocalEngine:
    return on_model(base.model, base.tokenizer, cache=cache, budget_mb=budget_mb, name=base.name)


_REFERENCE: dict[int, tuple[dict[str, list[list[int]]], int]] = {}


async def reference(base: LocalEngine, scripts: dict[str, tuple[str, list[int | str]]]) -> dict[str, list[list[int]]]:
    """Every episode's greedy turns without the cache (computed once per model)."""
    if id(base.model) not in _REFERENCE:
        plain = twin(base, cache=False)
        turns = {name: [ids for ids, _ in await episode(plain, *script)] for name, script in scripts.items()}
        _REFERENCE[id(base.model)] = turns, plain.stats.computed_tokens
    return _REFERENCE[id(base.model)][0]


async def test_branching_greedy_equals_no_cache(model: tuple) -> None:
    base, scripts, _ = model
    expected = await reference(base, scripts)
    engine = twin(base, cache=True)
    got = {name: await episode(engine, *script) for name, script in scripts.items()}
    assert {name: [ids for ids, _ in turns] for name, turns in got.items()} == expected
    prompt = len(engine.tokenizer.render_prompt(scripts["b"][0]))
    first = len(expected["b"][0])
    assert got["b"][0][1] == prompt - 1  # a computed the shared prompt: b only runs its last token
    assert got["b"][1][1] >= prompt + first  # and a's first turn, up to the branch point
    assert got["a"][2][1] >= got["a"][1][1] + len(expected["a"][1])  # each turn extends the last
    assert engine.stats.computed_tokens < _REFERENCE[id(base.model)][1] - 2 * prompt


async def test_eviction_under_tiny_budget_keeps_greedy_output(model: tuple) -> None:
    base, scripts, per_token = model
    expected = await reference(base, scripts)
    budget = 40 * per_token
    engine = twin(base, cache=True, budget_mb=budget / 2**20)
    for _ in range(2):  # the second round finds some prefixes evicted and some still there
        got = {name: [ids for ids, _ in await episode(engine, *script)] for name, script in scripts.items()}
        assert got == expected
    stats = engine.stats
    assert stats.evictions > 0 and stats.cached_tokens > 0
    assert stats.peak_cache_bytes <= budget
    assert engine.radix is not None and engine.radix.resident_bytes() == stats.cache_bytes <= budget


async def test_interleaved_concurrent_episodes_equal_no_cache(model: tuple) -> None:
    base, scripts, _ = model
    expected = await reference(base, scripts)
    engine = twin(base, cache=True)
    names = list(scripts) * 2  # two samples of every episode, all in flight at once
    results = await asyncio.gather(
        *(episode(engine, *scripts[name], name=f"{name}{i}") for i, name in enumerate(names)))
    for name, turns in zip(names, results, strict=False):
        assert [ids for ids, _ in turns] == expected[name]
    assert engine.stats.cached_tokens > engine.stats.prefill_tokens
    assert engine.stats.max_batch > 1  # rows of different lengths decoded together


async def test_long_run_measured_memory_stays_under_budget() -> None:
    per_token = 2 * 2 * 2 * 16 * 8
    budget = 150 * per_token
    engine = tiny_engine(budget_mb=budget / 2**20)
    rng = random.Random(3)
    words = ["two", "plus", "three", "wait", "so", "then"]
    resident = []
    for i in range(40):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 4)))
        steps: list[int | str] = [rng.randrange(4, 20), " " + rng.choice(words), rng.randrange(4, 20)]
        await episode(engine, prompt, steps, name=str(i))
        assert engine.radix is not None
        resident.append(engine.radix.resident_bytes())
    assert max(resident) <= budget
    assert engine.stats.peak_cache_bytes <= budget
    assert engine.stats.evictions > 0


async def test_cache_disabled_prefills_everything() -> None:
    engine = tiny_engine(cache=False)
    turns = await episode(engine, "two plus three", [6, 6, 6])
    assert engine.radix is None
    assert all(cached == 0 for _, cached in turns)
    assert engine.stats.prefill_tokens == engine.stats.prompt_tokens
