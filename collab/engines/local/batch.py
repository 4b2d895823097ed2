"""Sequences that decode together, in preallocated K/V buffers written in place.

Each layer keeps its keys and values in one buffer ``[slots, heads, capacity, head_dim]``. A sequence
owns a slot from its first position on (rows are right-padded): its cached prefix is copied in once,
its prompt is prefilled straight into it, and every decode step writes one column per row in place.
Nothing is concatenated per step. Buffers grow by doubling; a finished row's K/V is read from its
slot as a view, and the last row moves into the freed slot. Columns past a row's end are masked out
of attention (they hold zeros or stale K/V, always finite).
"""

from __future__ import annotations

from typing import Any

import torch

from collab.engines.local.hfcache import KV, Forward, buffer_cache, model_cache


def _capacity(needed: int, floor: int) -> int:
    return max(floor, 1 << (needed - 1).bit_length())


class Batch:
    """Up to ``max_rows`` sequences in slots ``0..len-1``; ``layers`` K/V layers of a plain-attention model."""

    def __init__(self, forward: Forward, layers: int, max_rows: int) -> None:
        self.forward = forward
        self.max_rows = max_rows
        self.lengths: list[int] = []
        """Per slot: positions stored."""
        self.seen = 0
        """The cache length the model sees during the current forward pass."""
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers
        self._cache = buffer_cache(self, layers)
        self._slot = -1  # the slot a prefill writes to; -1 while decoding every row
        self._columns: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    # ------------------------------------------------------------------ rows

    def open(self, prefix: list[KV]) -> int:
        """A new last slot holding the cached ``prefix`` segments (copied in); returns the slot."""
        slot = len(self.lengths)
        self.lengths.append(0)
        for kv in prefix:
            start, n = self.lengths[slot], kv[0].shape[-2]
            for layer in range(len(self.keys)):
                keys, values = kv[2 * layer], kv[2 * layer + 1]
                k, v = self._store(layer, keys, values, slice(slot, slot + 1), start + n)
                k[..., start : start + n, :], v[..., start : start + n, :] = keys, values
            self.lengths[slot] += n
        return slot

    def kv(self, slot: int) -> KV:
        """The slot's K/V (views into the buffers: valid until the batch changes)."""
        end = self.lengths[slot]
        return tuple(t[slot : slot + 1, :, :end] for pair in zip(self.keys, self.values, strict=True) for t in pair)  # type: ignore[index]

    def remove(self, slot: int) -> None:
        """Free ``slot``; the last row moves into it (callers reorder their rows the same way)."""
        last = len(self.lengths) - 1
        if slot != last:
            end = self.lengths[last]
            for buffer in (*self.keys, *self.values):
                buffer[slot, :, :end] = buffer[last, :, :end]  # type: ignore[index]
            self.lengths[slot] = end
        self.lengths.pop()
        if not self.lengths:  # idle: give the memory back
            self.clear()

    def clear(self) -> None:
        """Drop every row and the buffers."""
        self.lengths = []
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)

    # ------------------------------------------------------------------ forward passes

    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Run ``ids`` after the slot's stored positions; returns the last position's logits ``[vocab]``."""
        self._slot, self.seen = slot, self.lengths[slot]
        try:
            logits = self.forward([ids], self._cache)[0]
        finally:
            self._slot = -1
        self.lengths[slot] += len(ids)
        return logits

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """One token per row, each written after its row's end; returns logits ``[rows, vocab]``."""
        device = self.forward.device
        self.seen = max(self.lengths)
        mask = positions = None
        if min(self.lengths) != self.seen:  # rows of different lengths: mask each row's tail
            self._columns = torch.tensor(self.lengths, device=device)
            positions = self._columns[:, None]
            mask = (torch.arange(self.seen + 1, device=device)[None, :] <= positions).long()
        try:
            logits = self.forward([[token] for token in tokens], self._cache, mask, positions)
        finally:
            self._columns = None
        self.lengths = [n + 1 for n in self.lengths]
        return logits

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a forward pass's new K/V in place; returns what attention reads (views)."""
        n = keys.shape[-2]
        end = self.seen + n
        if self._slot >= 0:
            rows = slice(self._slot, self._slot + 1)
            k, v = self._store(layer, keys, values, rows, end)
            k[..., self.seen : end, :], v[..., self.seen : end, :] = keys, values
            return k[..., :end, :], v[..., :end, :]
        rows = slice(0, len(self.lengths))
        k, v = self._store(layer, keys, values, rows, end)
        if self._columns is None:
            k[..., self.seen, :], v[..., self.seen, :] = keys[..., 0, :], values[..., 0, :]
        else:
            index = torch.arange(len(self.lengths), device=keys.device)
            k[index, :, self._columns], v[index, :, self._columns] = keys[:, :, 0], values[:, :, 0]
        return k[..., :end, :], v[..., :end, :]

    def _store(self, layer: int, keys: torch.Tensor, values: torch.Tensor, rows: slice,
               end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s buffers for ``rows`` up to column ``end``, grown (doubling) when too small."""
        buffer = self.keys[layer]
        if buffer is None or buffer.shape[0] < rows.stop or buffer.shape[2] < end:
            slots = min(self.max_rows, _capacity(rows.stop, 1)) if buffer is None or buffer.shape[0] < rows.stop \
                else buffer.shape[0]
            columns = _capacity(end, 256) if buffer is None or buffer.shape[2] < end else buffer.shape[2]
            for store, like in ((self.keys, keys), (self.values, values)):
                grown = like.new_zeros(max(slots, rows.stop), like.shape[1], columns, like.shape[-1])
                old = store[layer]
                if old is not None:
                    grown[: old.shape[0], :, : old.shape[2]] = old
                store[layer] = grown
        k, v = self.keys[layer], self.values[layer]
        assert k is not None and v is not None
        return k[rows], v[rows]


class Single:
    """A single sequence on the model's own cache layers, for models whose state is not plain K/V."""

    def __init__(self, forward: Forward, config: Any) -> None:
        self.forward = forward
        self.config = config
        self.cache: Any = None

    def __len__(self) -> int:
        return int(self.cache is not None)

    def open(self, prefix: list[KV]) -> int:
        """Start the one sequence (no cached prefix); returns its slot."""
        assert not prefix and self.cache is None, "one sequence at a time, without a cached prefix"
        self.cache = model_cache(self.config)
        return 0

    def kv(self, slot: int) -> KV:
        """Recurrent state cannot be handed to the radix cache."""
        raise NotImplementedError("recurrent state is not reusable")

    def remove(self, slot: int) -> None:
        """Drop the sequence."""
        self.cache = None

    def clear(self) -> None:
        """Drop the sequence."""
        self.cache = None

    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Run the sequence's prompt; returns the logits of its last position."""
        assert self.cache is not None
        return self.forward([ids], self.cache)[0]

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Run one token; returns the next logits."""
        assert self.cache is not None
        return self.forward([tokens], self.cache)
