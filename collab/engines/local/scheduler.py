"""The local engine's worker thread: prefix lookup, prefill, batched decoding, cache insertion.

Requests queue up in arrival order. Between decode steps the worker admits every waiting request
(up to ``max_batch`` running): it takes the longest cached prefix from the radix tree, prefills the
rest on its own, stores the prompt's K/V in the tree at once (so the next request admitted, say
another sample of the same problem, finds the whole prompt) and joins the decoding batch. Each
step runs one forward pass for all rows and samples each row with its own seeded generator; a
finished row leaves the batch and its prompt + output K/V go into the tree.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from collab.engines.base import (
    Completion,
    EngineError,
    FinishType,
    GenerateRequest,
    Tokenizer,
)
from collab.engines.local.batch import Batch
from collab.engines.local.hfcache import KV, Forward, cache_kv, new_cache
from collab.engines.local.logprobs import token_logprob
from collab.engines.local.radix import Match, RadixCache
from collab.engines.logprobs import TokenLogprob

PREFILL_CHUNK = 512
"""Prompt tokens per forward pass: bounds the attention's working memory on long prompts."""


@dataclass
class LocalStats:
    """Token accounting of one engine since it opened."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens whose K/V came from the radix cache."""
    prefill_tokens: int = 0
    """Prompt tokens run through the model."""
    decode_tokens: int = 0
    """Generated tokens run through the model (the last token of a completion never is)."""
    max_batch: int = 0
    """The most sequences decoded in one step."""
    cache_tokens: int = 0
    cache_bytes: int = 0
    peak_cache_bytes: int = 0
    evictions: int = 0
    evicted_tokens: int = 0

    @property
    def computed_tokens(self) -> int:
        """Every token position the model computed: prefill plus decode."""
        return self.prefill_tokens + self.decode_tokens


def sample(logits: torch.Tensor, request: GenerateRequest, generator: torch.Generator) -> int:
    """One token from the last position's logits: greedy at temperature 0, else top-k, then top-p."""
    if request.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    if request.top_k <= 0 and request.top_p >= 1:
        return int(torch.multinomial(probs, 1, generator=generator))
    if request.top_k > 0:
        probs, order = probs.topk(min(request.top_k, probs.numel()))
    else:
        probs, order = probs.sort(descending=True)
    if request.top_p < 1:
        probs = probs / probs.sum()
        probs = probs[(probs.cumsum(0) - probs) < request.top_p]  # always keeps the first
    return int(order[torch.multinomial(probs, 1, generator=generator)])


@dataclass
class Job:
    """One request on its way through the worker; ``cancelled`` is set from the event loop."""

    request: GenerateRequest
    future: asyncio.Future[Completion]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False

    def resolve(self, result: Completion | BaseException) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop is gone: nobody is waiting
            pass


@dataclass
class Row:
    """A running request: its ids, its output so far, its sampler and stopping rules."""

    job: Job
    ids: list[int]
    limit: int
    cached: int
    generator: torch.Generator
    stop_ids: set[int]
    out: list[int] = field(default_factory=list)
    finish: FinishType = "length"
    matched: int | str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def advance(self, logits: torch.Tensor, tokenizer: Tokenizer) -> bool:
        """Sample and append the next token; returns whether the sequence is finished."""
        request = self.job.request
        token = sample(logits, request, self.generator)
        self.out.append(token)
        if request.logprobs is not None:
            self.logprobs.append(token_logprob(logits, token, request.logprobs))
        if token in self.stop_ids:
            self.finish, self.matched = "stop", token
            return True
        if request.stop:
            # a stop string this token completed spans at most 4 tokens per character (a token adds
            # at least one UTF-8 byte): decoding only that tail keeps each check short
            window = 4 * max(len(s) for s in request.stop) + 8
            tail = tokenizer.decode(self.out[-window:])
            hit = next((s for s in request.stop if s in tail), None)
            if hit is not None:
                self.finish, self.matched = "stop", hit
                return True
        return len(self.out) >= self.limit


_STOP = object()


class Scheduler:
    """Owns the model's forward passes, the radix tree and the accounting; runs on its own thread."""

    def __init__(self, forward: Forward, tokenizer: Tokenizer, radix: RadixCache | None, config: Any,
                 max_positions: int, max_batch: int, name: str) -> None:
        self.forward = forward
        self.tokenizer = tokenizer
        self.radix = radix
        self.native_config = config
        """The model config when its own cache layers are needed (no prefix reuse), else ``None``."""
        self.max_positions = max_positions
        self.max_batch = max_batch
        self.stats = LocalStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch = Batch()
        self._rows: list[Row] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"collab-local-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        """End the thread after the current step; running and waiting requests fail as closed."""
        self._closing.set()
        self._queue.put(_STOP)  # wakes an idle worker
        self._thread.join()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._closing.is_set():
                while len(self._rows) < self.max_batch and not self._closing.is_set():
                    item = self._queue.get() if not self._rows else self._next()  # idle: wait for work
                    if item is None or item is _STOP:
                        break
                    self._admit(item)
                if self._rows:
                    self._step()
        self._shutdown()

    def _next(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _shutdown(self) -> None:
        closed = EngineError("engine closed", retryable=True)
        for row in self._rows:
            row.job.resolve(closed)
        while (item := self._next()) is not None:
            if item is not _STOP:
                item.resolve(closed)
        self._rows, self._batch = [], Batch()

    def _admit(self, job: Job) -> None:
        if job.cancelled:
            return
        try:
            row, cache, logits = self._prefill(job)
            if row.limit <= 0 or row.advance(logits, self.tokenizer):
                self._finish(row, cache_kv(cache) if self.radix is not None else None)
                return
            self._batch.add(cache)
        except Exception as error:
            job.resolve(_engine_error(error))
            return
        self._rows.append(row)
        self.stats.max_batch = max(self.stats.max_batch, len(self._rows))

    def _prefill(self, job: Job) -> tuple[Row, Any, torch.Tensor]:
        """Reuse the longest cached prefix, compute the rest, store the prompt's K/V in the tree."""
        request = job.request
        ids = list(request.input_ids)
        if len(ids) > self.max_positions:
            raise EngineError(f"prompt of {len(ids)} tokens exceeds the model's context", retryable=False)
        match = self.radix.match(ids[:-1]) if self.radix is not None else Match(0)
        try:
            cache = new_cache(match.kv, self.native_config)
        finally:
            if self.radix is not None:
                self.radix.release(match)
        for start in range(match.length, len(ids), PREFILL_CHUNK):
            logits = self.forward([ids[start : start + PREFILL_CHUNK]], cache)[0]
        if self.radix is not None:
            self.radix.insert(ids, cache_kv(cache))
        self.stats.requests += 1
        self.stats.prompt_tokens += len(ids)
        self.stats.cached_tokens += match.length
        self.stats.prefill_tokens += len(ids) - match.length
        generator = torch.Generator(device=self.forward.device)
        if request.seed is None:
            generator.seed()
        else:
            generator.manual_seed(request.seed)
        row = Row(job, ids, min(request.max_new_tokens, self.max_positions - len(ids)), match.length, generator,
                  set(request.stop_token_ids) | set(self.tokenizer.eos_token_ids))
        return row, cache, logits

    def _step(self) -> None:
        """One decode step for every row, then retire the finished and cancelled rows."""
        try:
            self._decode()
        except Exception as error:
            for row in self._rows:
                row.job.resolve(_engine_error(error))
            self._rows, self._batch = [], Batch()

    def _decode(self) -> None:
        assert self._batch.cache is not None
        mask, positions = self._batch.inputs()
        logits = self.forward([[row.out[-1]] for row in self._rows], self._batch.cache, mask, positions)
        self.stats.decode_tokens += len(self._rows)
        done = [i for i, row in enumerate(self._rows)
                if row.job.cancelled or row.advance(logits[i], self.tokenizer)]
        if not done:
            return
        for i, kv in zip(done, self._batch.remove(done, want_kv=self.radix is not None)):
            self._finish(self._rows[i], kv)
        self._rows = [row for i, row in enumerate(self._rows) if i not in done]

    def _finish(self, row: Row, kv: KV | None) -> None:
        """Store the row's K/V in the tree and answer its request."""
        if self.radix is not None and kv is not None:
            computed = kv[0].shape[-2]
            self.radix.insert((row.ids + row.out)[:computed], kv)
        if row.job.cancelled:
            return
        row.job.resolve(Completion(
            text=self.tokenizer.decode(row.out), token_ids=row.out, finish_reason=row.finish, matched=row.matched,
            prompt_tokens=len(row.ids), cached_tokens=row.cached,
            logprobs=row.logprobs if row.job.request.logprobs is not None else None,
        ))


def _engine_error(error: Exception) -> EngineError:
    if isinstance(error, EngineError):
        return error
    return EngineError(str(error), retryable=isinstance(error, torch.OutOfMemoryError))
