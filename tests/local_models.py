"""Models for the local engine's tests: a tiny random-weight Llama and the real SmolLM2 GGUF.

The tiny model runs in float64 over a character vocabulary, so greedy choices never hinge on
rounding and the cache logic is covered in milliseconds. The real model is loaded once per session.
Torch runs on one thread: on a shared machine, more threads than free cores slow it down tenfold.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import torch

from collab.engines.base import GenerateRequest, RequestContext
from collab.engines.local.engine import LocalEngine

torch.set_num_threads(1)


class CharTokenizer:
    """One token per character of a small alphabet; the id after it is the end of sequence."""

    ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"
    EOS = len(ALPHABET)

    def __init__(self, eos_token_ids: list[int] | None = None) -> None:
        self.key = "chars"
        self.think_open = None
        self.think_close = None
        self.eos_token_ids = [self.EOS] if eos_token_ids is None else eos_token_ids

    def encode(self, text: str) -> list[int]:
        return [self.ALPHABET.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.ALPHABET[i] if i < self.EOS else "<eos>" for i in ids)

    def render_prompt(self, user: str, system: str | None = None) -> list[int]:
        return self.encode(f"user {user}\nassistant ")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=CharTokenizer.EOS + 1, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, initializer_range=0.5)
    return LlamaForCausalLM(config).to(torch.float64).eval()


def on_model(model: torch.nn.Module, tokenizer: object, *, cache: bool = True, budget_mb: float = 512,
             name: str = "tiny") -> LocalEngine:
    """An engine around an already loaded model (engines may share one model's weights)."""
    engine = LocalEngine(name, name, cache=cache, cache_budget_mb=budget_mb)
    engine.attach(model, tokenizer)  # type: ignore[arg-type]
    return engine


def tiny_engine(*, cache: bool = True, budget_mb: float = 512, tokenizer: CharTokenizer | None = None) -> LocalEngine:
    return on_model(_tiny(), tokenizer or CharTokenizer(), cache=cache, budget_mb=budget_mb)


@lru_cache(maxsize=1)
def _tiny() -> torch.nn.Module:
    return tiny_model()


@lru_cache(maxsize=1)
def smol(path: Path) -> LocalEngine:
    """SmolLM2-135M-Instruct opened from its GGUF file, once per session."""
    engine = LocalEngine("smol", str(path))
    asyncio.run(engine.open())
    return engine


async def episode(engine: LocalEngine, prompt: str, steps: list[int | str],
                  name: str = "") -> list[tuple[list[int], int]]:
    """A relay-like episode of greedy turns: an int generates that many tokens, a string is injected.

    Returns each turn's ``(token ids, cached tokens)``; every request extends the previous one.
    """
    ids = engine.tokenizer.render_prompt(prompt)
    turns = []
    for index, step in enumerate(steps):
        if isinstance(step, str):
            ids = ids + engine.tokenizer.encode(step)
            continue
        request = GenerateRequest(list(ids), step, temperature=0.0, context=RequestContext(name, "a", index))
        completion = await engine.generate(request)
        turns.append((completion.token_ids, completion.cached_tokens))
        ids = ids + completion.token_ids
    return turns
