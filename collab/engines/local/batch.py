"""Sequences that decode together: one KV cache with a left-padded row per sequence.

Rows join after their own prefill and leave when they finish; both copy the batch's K/V once, so a
decode step costs one forward pass for every row. Padding is masked out of attention and trimmed
as soon as no row needs it; a lone row has none and runs exactly like an unbatched sequence.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from collab.engines.local.hfcache import KV, cache_kv, set_cache_kv


def _left_pad(t: torch.Tensor, n: int) -> torch.Tensor:
    if n == 0:
        return t
    return torch.cat([t.new_zeros(*t.shape[:-2], n, t.shape[-1]), t], dim=-2)


class Batch:
    """Sequences decoded together: one padded KV cache and each row's padding."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.pads: list[int] = []
        """Per row: how many padding positions precede its tokens."""

    def __len__(self) -> int:
        return len(self.pads)

    def add(self, cache: DynamicCache) -> None:
        """Append a prefilled sequence's cache as the last row (the first one is adopted as is)."""
        if self.cache is None:
            self.cache, self.pads = cache, [0]
            return
        ours, theirs = cache_kv(self.cache), cache_kv(cache)
        length, new = ours[0].shape[-2], theirs[0].shape[-2]
        if new > length:
            ours = tuple(_left_pad(t, new - length) for t in ours)
            self.pads = [pad + new - length for pad in self.pads]
            length = new
        merged = tuple(torch.cat([a, _left_pad(b, length - new)], dim=0) for a, b in zip(ours, theirs, strict=False))
        set_cache_kv(self.cache, merged)
        self.pads.append(length - new)

    def inputs(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(attention_mask, position_ids)`` for the next step: ``None`` when no row is padded."""
        if not any(self.pads):
            return None, None
        assert self.cache is not None
        length = self.cache.get_seq_length()
        device = cache_kv(self.cache)[0].device
        columns = torch.arange(length + 1, device=device)
        pads = torch.tensor(self.pads, device=device)
        mask = (columns[None, :] >= pads[:, None]).long()
        return mask, (length - pads)[:, None]

    def remove(self, rows: list[int], want_kv: bool) -> list[KV | None]:
        """Drop ``rows``; with ``want_kv``, returns each one's K/V without padding (views, still valid)."""
        assert self.cache is not None
        keep = [i for i in range(len(self.pads)) if i not in rows]
        if not keep and not want_kv:
            self.cache, self.pads = None, []
            return [None] * len(rows)
        kv = cache_kv(self.cache)
        removed: list[KV | None] = [tuple(t[i : i + 1, :, self.pads[i] :, :] for t in kv) for i in rows]
        if not keep:
            self.cache, self.pads = None, []
            return removed
        trim = min(self.pads[i] for i in keep)
        index = torch.tensor(keep, device=kv[0].device)
        set_cache_kv(self.cache, tuple(t.index_select(0, index)[..., trim:, :] for t in kv))
        self.pads = [self.pads[i] - trim for i in keep]
        return removed
