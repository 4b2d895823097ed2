"""The one place that knows the installed transformers' KV-cache API.

K/V are exchanged with the rest of the local engine as a flat tuple of tensors (K and V of each
layer, shape ``[batch, heads, seq, head_dim]``, the sequence on dim -2), so the radix tree stays
independent of transformers versions.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer, DynamicSlidingWindowLayer

KV = tuple[torch.Tensor, ...]


class Forward:
    """Runs a causal LM on new tokens against a cache; returns the last position's logits."""

    def __init__(self, model: Any) -> None:
        params = inspect.signature(model.forward).parameters
        self.model = model
        self.device = next(model.parameters()).device
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def __call__(self, ids: list[list[int]], cache: Cache, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``ids``: one equally long row per sequence; returns logits ``[rows, vocab]``."""
        x = torch.tensor(ids, device=self.device)
        out = self.model(input_ids=x, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                         **{self.cache_kw: cache}, **self.extra)
        return out.logits[:, -1]


class Buffers(Protocol):
    """Where a :func:`buffer_cache` keeps its K/V: ``seen`` positions before the current forward pass."""

    seen: int

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a forward pass's new K/V for ``layer``; returns the K/V attention reads."""
        ...


class _Layer(CacheLayerMixin):
    """One layer of a :func:`buffer_cache`: hands every update to its owner."""

    is_sliding = False

    def __init__(self, owner: Buffers, index: int) -> None:
        super().__init__()
        self.owner, self.index = owner, index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.owner.write(self.index, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.owner.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.seen + query_length, 0

    def get_max_length(self) -> int:
        return -1


def buffer_cache(owner: Buffers, layers: int) -> Cache:
    """A cache of ``layers`` plain attention layers whose storage ``owner`` manages."""
    return Cache(layers=[_Layer(owner, i) for i in range(layers)])


def model_cache(config: Any) -> DynamicCache:
    """A cache with the model's own layer kinds (recurrent state included)."""
    return DynamicCache(config=config)


def kv_layers(config: Any) -> int:
    """How many layers of the model keep K/V."""
    return len(DynamicCache(config=config).layers)


def prefix_cacheable(config: Any) -> bool:
    """Whether every layer attends over plain K/V (full or windowed), so a prefix's K/V can be reused.

    Recurrent (linear-attention) layers, KV-sharing layers and indexers hold state that is not.
    """
    layers = DynamicCache(config=config).layers
    return bool(layers) and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)
