"""The one place that knows the installed transformers' KV-cache API.

A cache is exchanged with the rest of the local engine as a flat tuple of tensors (K and V of each
layer, shape ``[batch, heads, seq, head_dim]``, the sequence on dim -2), so the radix tree stays
independent of transformers versions.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

KV = tuple[torch.Tensor, ...]


class Forward:
    """Runs a causal LM on new tokens against a cache; returns the last position's logits."""

    def __init__(self, model: Any) -> None:
        params = inspect.signature(model.forward).parameters
        self.model = model
        self.device = next(model.parameters()).device
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def __call__(self, ids: list[list[int]], cache: DynamicCache, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``ids``: one equally long row per sequence; returns logits ``[rows, vocab]``."""
        x = torch.tensor(ids, device=self.device)
        out = self.model(input_ids=x, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                         **{self.cache_kw: cache}, **self.extra)
        return out.logits[:, -1]


def new_cache(kv: KV | None = None, config: Any = None) -> DynamicCache:
    """A dynamic cache, optionally filled with ``kv`` (copied: the cache never aliases it).

    Without ``config`` every layer keeps its whole past (windowed layers rely on the attention mask),
    which is what prefix reuse needs; with it, the model's own layer kinds.
    """
    cache = DynamicCache(config=config) if config is not None else DynamicCache()
    if kv is not None:
        for layer in range(len(kv) // 2):
            cache.update(kv[2 * layer], kv[2 * layer + 1], layer)  # DynamicLayer.update concatenates: a copy
    return cache


def cache_kv(cache: DynamicCache) -> KV:
    """The cache's tensors as a flat ``(k0, v0, k1, v1, ...)`` tuple (views, not copies)."""
    layers: list[Any] = list(cache.layers)  # the dynamic layers of a plain model's cache
    return tuple(t for layer in layers for t in (layer.keys, layer.values))


def set_cache_kv(cache: DynamicCache, kv: KV) -> None:
    """Replace the cache's tensors (no copy) with a flat tuple shaped like :func:`cache_kv`'s."""
    layers: list[Any] = list(cache.layers)
    for index, layer in enumerate(layers):
        layer.keys, layer.values = kv[2 * index], kv[2 * index + 1]


def prefix_cacheable(config: Any) -> bool:
    """Whether every layer attends over plain K/V (full or windowed), so a prefix's K/V can be reused.

    Recurrent (linear-attention) layers, KV-sharing layers and indexers hold state that is not.
    """
    layers = DynamicCache(config=config).layers
    return bool(layers) and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)
