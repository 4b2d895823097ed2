"""A token-level radix tree of KV-cache segments, shared by every request on one model.

Each edge holds a run of token ids and the K/V tensors of exactly those positions (a flat tuple of
tensors, sequence on dim -2). Nodes own their tensors: they are copied out of a request's working
cache on insertion, and a match hands out read-only views of them that the request copies into its
own buffers once, so in-place changes to a working cache never reach the tree and diverging
branches never share memory. Unreferenced leaves are evicted least
recently used first, so the stored tensors never exceed the byte budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

KV = tuple[torch.Tensor, ...]


def _length(kv: KV) -> int:
    return kv[0].shape[-2]


def _nbytes(kv: KV) -> int:
    return sum(t.nbytes for t in kv)


def _copy(kv: KV, start: int, stop: int) -> KV:
    """Positions ``start:stop`` in fresh, contiguous memory."""
    return tuple(t[..., start:stop, :].clone(memory_format=torch.contiguous_format) for t in kv)


def _common_prefix(key: list[int], tokens: list[int], start: int) -> int:
    n = min(len(key), len(tokens) - start)
    if tokens[start : start + n] == key[:n]:
        return n
    i = 0
    while key[i] == tokens[start + i]:
        i += 1
    return i


class _Node:
    __slots__ = ("children", "key", "kv", "last_used", "nbytes", "parent", "refs")

    def __init__(self, key: list[int], kv: KV | None, parent: _Node | None) -> None:
        self.key = key
        self.kv = kv
        self.nbytes = _nbytes(kv) if kv else 0
        self.children: dict[int, _Node] = {}
        self.parent = parent
        self.refs = 0
        self.last_used = 0

    def __lt__(self, other: _Node) -> bool:  # heap order for eviction
        return self.last_used < other.last_used


@dataclass
class Match:
    """The cached prefix of a request: its length, its K/V segments, and the lock it holds."""

    length: int
    parts: list[KV] = field(default_factory=list)
    """The K/V of consecutive segments of the prefix: views of the tree's tensors, to be copied, never
    written, and valid until :meth:`RadixCache.release`."""
    node: _Node | None = None
    """The deepest node used; it and its ancestors stay locked against eviction until released."""


class RadixCache:
    """Longest-prefix lookup, insertion and LRU eviction of K/V segments under ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.root = _Node([], None, None)
        self.root.refs = 1  # never evicted
        self.bytes = 0
        self.peak_bytes = 0
        self.tokens = 0
        self.evicted_nodes = 0
        self.evicted_tokens = 0
        self._clock = 0

    # ------------------------------------------------------------------ lookup

    def match(self, tokens: Sequence[int]) -> Match:
        """The longest cached prefix of ``tokens``; it stays locked until :meth:`release`."""
        tokens = list(tokens)
        self._clock += 1
        node, pos, parts = self.root, 0, []
        while pos < len(tokens) and (child := node.children.get(tokens[pos])) is not None:
            n = _common_prefix(child.key, tokens, pos)
            child.last_used = self._clock
            assert child.kv is not None
            parts.append(child.kv if n == len(child.key) else tuple(t[..., :n, :] for t in child.kv))
            pos += n
            node = child
            if n < len(child.key):
                break
        if not parts:
            return Match(0)
        self._lock(node, 1)
        return Match(pos, parts, node)

    def release(self, match: Match) -> None:
        """Unpin the nodes a match holds."""
        if match.node is not None:
            self._lock(match.node, -1)
            match.node = None

    def _lock(self, node: _Node | None, delta: int) -> None:
        while node is not None and node is not self.root:
            node.refs += delta
            node = node.parent

    # ------------------------------------------------------------------ insertion

    def insert(self, tokens: Sequence[int], kv: KV) -> int:
        """Store ``kv`` (positions ``0:len(tokens)``) under ``tokens``; returns how many tokens were new.

        Only positions not yet in the tree are copied. When the budget cannot hold them all, even
        after evicting every unreferenced leaf, the part that fits is kept.
        """
        tokens = list(tokens)
        assert _length(kv) >= len(tokens), "the K/V must cover every token"
        self._clock += 1
        node, pos = self.root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                break
            n = _common_prefix(child.key, tokens, pos)
            child.last_used = self._clock
            if pos + n == len(tokens):
                return 0
            if n < len(child.key):
                child = self._split(child, n)
            pos += n
            node = child
        if pos == len(tokens):
            return 0
        per_token = max(1, _nbytes(kv) // _length(kv))
        room = self.budget_bytes - self.bytes
        if room < per_token * (len(tokens) - pos):
            self._lock(node, 1)  # the branch point must survive the eviction
            room += self._evict(per_token * (len(tokens) - pos) - room)
            self._lock(node, -1)
        stop = min(len(tokens), pos + room // per_token)
        if stop <= pos:
            return 0
        leaf = _Node(tokens[pos:stop], _copy(kv, pos, stop), node)
        leaf.last_used = self._clock
        node.children[tokens[pos]] = leaf
        self._account(leaf.nbytes, stop - pos)
        return stop - pos

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut ``node``'s edge after ``at`` tokens; returns the new upper node."""
        assert node.kv is not None and node.parent is not None
        upper = _Node(node.key[:at], _copy(node.kv, 0, at), node.parent)
        upper.last_used = node.last_used
        upper.refs = node.refs  # every lock through the lower part runs through the upper one
        node.parent.children[node.key[0]] = upper
        lower_kv = _copy(node.kv, at, len(node.key))
        node.key, node.kv, node.parent = node.key[at:], lower_kv, upper
        upper.nbytes, node.nbytes = _nbytes(upper.kv), _nbytes(lower_kv)  # type: ignore[arg-type]
        upper.children[node.key[0]] = node
        return upper

    # ------------------------------------------------------------------ eviction

    def _evict(self, wanted: int) -> int:
        """Free at least ``wanted`` bytes if possible, least recently used leaves first."""
        heap = [n for n in self._nodes() if not n.children and n.refs == 0]
        heapq.heapify(heap)
        freed = 0
        while heap and freed < wanted:
            leaf = heapq.heappop(heap)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.key[0]]
            freed += leaf.nbytes
            self.evicted_nodes += 1
            self.evicted_tokens += len(leaf.key)
            self._account(-leaf.nbytes, -len(leaf.key))
            if parent is not self.root and not parent.children and parent.refs == 0:
                heapq.heappush(heap, parent)
        return freed

    def _account(self, nbytes: int, tokens: int) -> None:
        self.bytes += nbytes
        self.tokens += tokens
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _nodes(self) -> list[_Node]:
        out, stack = [], list(self.root.children.values())
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    # ------------------------------------------------------------------ inspection

    def resident_bytes(self) -> int:
        """Bytes of the distinct tensor storages the tree holds, measured rather than accounted."""
        storages = {
            t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for node in self._nodes()
            for t in node.kv or ()
        }
        return sum(storages.values())

    def clear(self) -> None:
        """Drop every cached prefix."""
        self.root.children.clear()
        self.bytes = self.tokens = 0
